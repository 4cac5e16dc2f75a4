"""Cases for identities: peer ids, domain-separated signatures, signed records, key files (spec/identity.md)."""

from __future__ import annotations

import hashlib

from p2pos.proto.identity import crypto
from p2pos.proto.identity.identity import Identity, SignedRecord
from p2pos.proto.identity.peer_id import b32encode

from .checks import expect, expect_eq, unhex
from .iut import Iut
from .reference import IUT, OTHER, REF, derive
from .registry import case

ENCODING = "identity.md §2.1"
PEERID = "identity.md §2.2"
SIG = "identity.md §3.1"
VERIFY = "identity.md §3.2"
RECORD = "identity.md §3.3"
KEYFILE = "identity.md §4"

_SEEDS = (bytes(32), bytes([0xFF]) * 32, IUT.seed, REF.seed)


def _ref_text(seed: bytes = REF.seed) -> str:
    return str(Identity.from_seed(seed).peer_id)


def _raw_peer_id(version: int, key: bytes) -> str:
    """A peer id text with any version byte and a correct checksum."""
    body = bytes([version]) + key
    check = hashlib.blake2b(body, digest_size=4, person=b"p2pos-peer-id").digest()
    return b32encode(body + check)


def _expect_invalid(iut: Iut, text: str, what: str) -> None:
    expect_eq(iut.error("parse_peer_id", text=text), "INVALID_PEER_ID", what)


@case(
    "id/peerid/1",
    section=ENCODING,
    title="the peer id of a seed is the reference text",
    requirements=(
        "ID-1.1",
        "ID-1.3",
        "ID-2.1.1",
        "ID-2.2.8",
        "CONF-2.3",
        "CONF-2.4",
        "CONF-2.5",
        "CONF-2.1.3",
        "CONF-2.2.1",
        "CONF-3.1.1",
    ),
)
def _(iut: Iut) -> str:
    for seed in _SEEDS:
        expect_eq(iut.ok("peer_id", seed=seed).get("peer_id"), _ref_text(seed), f"peer id of seed {seed.hex()[:8]}")
    return f"{len(_SEEDS)} seeds"


@case(
    "id/peerid/2",
    section=PEERID,
    title="a peer id parses back to its public key",
    requirements=(
        "ID-1.3",
        "CONF-2.3",
        "CONF-2.5",
        "CONF-2.1.1",
        "CONF-3.1.2",
    ),
)
def _(iut: Iut) -> None:
    for seed in _SEEDS:
        identity = Identity.from_seed(seed)
        answer = iut.ok("parse_peer_id", text=str(identity.peer_id))
        expect_eq(unhex(answer.get("public_key"), "public_key"), identity.peer_id.public_key, "parsed public key")


@case(
    "id/peerid/3",
    section=PEERID,
    title="a one-character typo is caught by the checksum",
    requirements=(
        "ID-2.2.1",
        "ID-2.2.7",
        "ERR-1.18",
        "ERR-4.1",
        "CONF-2.1.4",
        "CONF-2.2.2",
        "CONF-3.1.2",
    ),
)
def _(iut: Iut) -> str:
    text = _ref_text()
    tried = 0
    for pos in (0, 7, 20, 33, 50):
        for repl in "a7":
            if text[pos] == repl:
                continue
            _expect_invalid(iut, text[:pos] + repl + text[pos + 1 :], f"typo at {pos}")
            tried += 1
    return f"{tried} typos rejected"


@case(
    "id/peerid/4",
    section=PEERID,
    title="a peer id of the wrong length is rejected",
    requirements=(
        "ID-2.2.1",
        "ID-2.2.3",
        "ERR-1.18",
    ),
)
def _(iut: Iut) -> None:
    text = _ref_text()
    for bad in (text[:-1], text + "a", text[:30], "", text + text):
        _expect_invalid(iut, bad, f"length {len(bad)}")


@case(
    "id/peerid/5",
    section=PEERID,
    title="characters outside the base32 alphabet are rejected",
    requirements=(
        "ID-2.2.1",
        "ID-2.2.4",
        "ERR-1.18",
    ),
)
def _(iut: Iut) -> None:
    text = _ref_text()
    for ch in "0189=_/+é":
        _expect_invalid(iut, text[:10] + ch + text[11:], f"character {ch!r}")


@case(
    "id/peerid/6",
    section=PEERID,
    title="non-canonical trailing bits are rejected",
    requirements=(
        "ID-2.2.1",
        "ID-2.2.5",
        "ERR-1.18",
    ),
)
def _(iut: Iut) -> None:
    text = _ref_text()
    # 37 bytes fill 296 of the 300 bits of 60 characters: the last character's 4 low bits must be zero.
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    last = alphabet.index(text[-1])
    for low in (1, 2, 8):
        _expect_invalid(iut, text[:-1] + alphabet[last | low], f"trailing bits {low:04b}")


@case("id/peerid/7", section=PEERID, title="upper case, spaces and dashes are tolerated", requirements=("ID-2.2.2",))
def _(iut: Iut) -> None:
    text = _ref_text()
    key = REF.peer_id.public_key
    variants = (
        text.upper(),
        " ".join(text[i : i + 4] for i in range(0, len(text), 4)),
        "-".join(text[i : i + 6] for i in range(0, len(text), 6)),
        f"  {text}\t",
    )
    for variant in variants:
        answer = iut.ok("parse_peer_id", text=variant)
        expect_eq(unhex(answer.get("public_key"), "public_key"), key, f"parse of {variant!r}")


@case(
    "id/peerid/8",
    section=PEERID,
    title="an unknown version byte is rejected even with a good checksum",
    requirements=(
        "GEN-4.5",
        "ID-2.2.1",
        "ID-2.2.6",
        "ERR-1.18",
    ),
)
def _(iut: Iut) -> None:
    for version in (0x00, 0x02, 0xFF):
        _expect_invalid(iut, _raw_peer_id(version, REF.peer_id.public_key), f"version {version}")
    answer = iut.ok("parse_peer_id", text=_raw_peer_id(0x01, REF.peer_id.public_key))
    expect_eq(unhex(answer.get("public_key"), "public_key"), REF.peer_id.public_key, "version 1 control")


@case(
    "id/sig/1",
    section=SIG,
    title="signatures are Ed25519 over the domain-separated message",
    requirements=(
        "GEN-4.3",
        "ID-1.1",
        "ID-3.1.1",
        "ID-3.1.2",
        "CONF-3.1.3",
    ),
)
def _(iut: Iut) -> None:
    for domain, message in ((b"p2pos/test", b"hello"), (b"d", b""), (bytes(range(1, 256)), bytes(1000))):
        answer = iut.ok("sign", seed=REF.seed, domain=domain, message=message)
        expected = REF.identity.sign(domain, message)
        expect_eq(unhex(answer.get("signature"), "signature"), expected, f"signature under {domain[:16]!r}")


@case(
    "id/sig/2",
    section=VERIFY,
    title="a valid signature verifies under its own domain",
    requirements=(
        "ID-3.2.1",
        "CONF-3.1.4",
    ),
)
def _(iut: Iut) -> None:
    sig = REF.identity.sign(b"p2pos/test", b"message")
    answer = iut.ok(
        "verify", public_key=REF.peer_id.public_key, domain=b"p2pos/test", message=b"message", signature=sig
    )
    expect_eq(answer.get("valid"), True, "verification of a good signature")


@case(
    "id/sig/3", section=SIG, title="a signature made under one domain fails under another", requirements=("ID-3.2.1",)
)
def _(iut: Iut) -> None:
    key = REF.peer_id.public_key
    sig = REF.identity.sign(b"p2pos/dht-record", b"message")
    for domain in (b"p2pos/rendezvous", b"p2pos/dht-recor", b"p2pos/dht-record\x00", b"p2pos/noise-static-key"):
        answer = iut.ok("verify", public_key=key, domain=domain, message=b"message", signature=sig)
        expect_eq(answer.get("valid"), False, f"signature checked under {domain!r}")
    # A signature of the domain-separated bytes must not be confused with one of the bare message.
    _, secret = crypto.ed25519_seed_keypair(REF.seed)
    bare = crypto.ed25519_sign(secret, b"message")
    answer = iut.ok("verify", public_key=key, domain=b"p2pos/dht-record", message=b"message", signature=bare)
    expect_eq(answer.get("valid"), False, "a plain Ed25519 signature of the message")


@case(
    "id/sig/4",
    section=VERIFY,
    title="a damaged signature or the wrong key does not verify",
    requirements=(
        "ID-3.2.1",
        "ID-3.2.6",
        "CONF-3.1.4",
        "CONF-3.1.5",
    ),
)
def _(iut: Iut) -> None:
    sig = REF.identity.sign(b"p2pos/test", b"message")
    flipped = bytes([sig[0] ^ 1]) + sig[1:]
    for key, signature, what in (
        (REF.peer_id.public_key, flipped, "one bit flipped"),
        (OTHER.peer_id.public_key, sig, "another identity's key"),
        (REF.peer_id.public_key, sig[:63], "a 63-byte signature"),
    ):
        answer = iut.ok("verify", public_key=key, domain=b"p2pos/test", message=b"message", signature=signature)
        expect_eq(answer.get("valid"), False, what)


#: The order L of the Ed25519 base point.
_L = 2**252 + 27742317777372353535851937790883648493


@case(
    "id/sig/5",
    section=VERIFY,
    title="strict Ed25519: small-order keys and non-canonical S are refused",
    requirements=(
        "ID-3.2.1",
        "ID-3.2.2",
        "ID-3.2.4",
    ),
)
def _(iut: Iut) -> None:
    neutral = b"\x01" + bytes(31)
    # With the neutral element as key and as R, S = 0 satisfies the cofactorless equation for any message.
    answer = iut.ok("verify", public_key=neutral, domain=b"p2pos/test", message=b"m", signature=neutral + bytes(32))
    expect_eq(answer.get("valid"), False, "a forgery under the small-order key 01 00..00")
    sig = REF.identity.sign(b"p2pos/test", b"m")
    s_plus_l = (int.from_bytes(sig[32:], "little") + _L).to_bytes(32, "little")
    answer = iut.ok(
        "verify", public_key=REF.peer_id.public_key, domain=b"p2pos/test", message=b"m", signature=sig[:32] + s_plus_l
    )
    expect_eq(answer.get("valid"), False, "a signature with S + L (malleated)")
    answer = iut.ok("verify", public_key=REF.peer_id.public_key, domain=b"p2pos/test", message=b"m", signature=sig)
    expect_eq(answer.get("valid"), True, "the original signature")


def _ref_record(payload: bytes = b"record payload", domain: bytes = b"p2pos/test-record") -> SignedRecord:
    return SignedRecord.create(REF.identity, domain, payload)


@case(
    "id/record/1",
    section=RECORD,
    title="a signed record encodes byte for byte like the reference",
    requirements=(
        "ID-3.3.1",
        "CONF-3.1.6",
    ),
)
def _(iut: Iut) -> None:
    for payload in (b"", b"record payload", derive("payload") * 100):
        answer = iut.ok("record_create", seed=REF.seed, domain=b"p2pos/test-record", payload=payload)
        expected = _ref_record(payload).encode()
        expect_eq(unhex(answer.get("record"), "record"), expected, f"record of a {len(payload)}-byte payload")


@case(
    "id/record/2",
    section=RECORD,
    title="a reference record decodes to its signer, domain and payload",
    requirements=(
        "ID-3.3.1",
        "CONF-3.1.7",
    ),
)
def _(iut: Iut) -> None:
    record = _ref_record()
    for domain in (None, b"p2pos/test-record"):
        answer = iut.ok("record_decode", data=record.encode(), domain=domain)
        expect_eq(answer.get("signer"), str(REF.peer_id), "signer")
        expect_eq(unhex(answer.get("domain"), "domain"), record.domain, "domain")
        expect_eq(unhex(answer.get("payload"), "payload"), record.payload, "payload")


@case(
    "id/record/3",
    section=RECORD,
    title="a tampered record fails with BAD_IDENTITY",
    requirements=(
        "ID-3.3.5",
        "ID-3.3.6",
        "ERR-4.1",
    ),
)
def _(iut: Iut) -> None:
    data = _ref_record().encode()
    sig_start = len(data) - 64
    payload_at = sig_start - 1
    for what, bad in (
        ("payload byte", data[:payload_at] + bytes([data[payload_at] ^ 1]) + data[payload_at + 1 :]),
        ("signature byte", data[:sig_start] + bytes([data[sig_start] ^ 1]) + data[sig_start + 1 :]),
        ("signer key", data[:1] + OTHER.peer_id.public_key + data[33:]),
    ):
        expect_eq(iut.error("record_decode", data=bad, domain=None), "BAD_IDENTITY", what)


@case(
    "id/record/4",
    section=RECORD,
    title="a record under another domain than expected is rejected",
    requirements=(
        "ID-3.3.5",
        "CONF-3.1.7",
    ),
)
def _(iut: Iut) -> None:
    data = _ref_record().encode()
    expect_eq(iut.error("record_decode", data=data, domain=b"p2pos/other"), "BAD_IDENTITY", "wrong domain")


@case(
    "id/record/5",
    section=RECORD,
    title="truncated, extended or empty-domain records are MALFORMED_MESSAGE",
    requirements=(
        "ID-3.3.3",
        "ID-3.3.4",
        "ERR-4.3",
    ),
)
def _(iut: Iut) -> None:
    data = _ref_record().encode()
    empty_domain = data[:33] + b"\x00" + data[34 + len(b"p2pos/test-record") :]
    for what, bad in (("truncated", data[:-1]), ("trailing byte", data + b"\x00"), ("header only", data[:10])):
        expect_eq(iut.error("record_decode", data=bad, domain=None), "MALFORMED_MESSAGE", what)
    expect(iut.call("record_decode", data=empty_domain, domain=None).get("ok") is False, "empty domain accepted")


@case(
    "id/record/6",
    section=RECORD,
    title="a record of an unknown version is UNSUPPORTED_VERSION",
    requirements=("ID-3.3.2",),
)
def _(iut: Iut) -> None:
    data = _ref_record().encode()
    expect_eq(iut.error("record_decode", data=b"\x02" + data[1:], domain=None), "UNSUPPORTED_VERSION", "version 2")


@case(
    "id/keyfile/1",
    section=KEYFILE,
    title="a reference key file loads to its peer id",
    requirements=(
        "ID-4.2",
        "ID-4.4",
        "ID-4.8",
        "CONF-3.1.8",
    ),
)
def _(iut: Iut) -> None:
    answer = iut.ok("key_file", data=REF.identity.to_key_file())
    expect_eq(answer.get("peer_id"), str(REF.peer_id), "peer id of the key file")


@case(
    "id/keyfile/2",
    section=KEYFILE,
    title="damaged key files are INVALID_KEY_FILE",
    requirements=(
        "ID-4.2",
        "ID-4.7",
        "ID-4.8",
        "ID-4.9",
        "ERR-1.19",
        "ERR-4.1",
        "CONF-2.2.2",
        "CONF-3.1.8",
    ),
)
def _(iut: Iut) -> None:
    good = REF.identity.to_key_file()
    mismatched = good.replace(REF.peer_id.public_key.hex().encode(), OTHER.peer_id.public_key.hex().encode())
    for what, bad in (
        ("no magic line", good.split(b"\n", 1)[1]),
        ("public key of another seed", mismatched),
        ("short seed", good.replace(REF.seed.hex().encode(), REF.seed.hex()[:-2].encode())),
        ("missing public line", b"\n".join(line for line in good.split(b"\n") if not line.startswith(b"public"))),
    ):
        expect_eq(iut.error("key_file", data=bad), "INVALID_KEY_FILE", what)


@case(
    "id/keyfile/3",
    section=KEYFILE,
    title="key files load with hex in either case and white space around lines; not with white space in a value",
    requirements=("ID-4.1", "ID-4.4", "ID-4.6", "ID-4.9"),
)
def _(iut: Iut) -> None:
    good = REF.identity.to_key_file()
    seed, public = REF.seed.hex().encode(), REF.peer_id.public_key.hex().encode()
    upper = good.replace(seed, seed.upper()).replace(public, public.upper())
    spaced = b"\r\n \t" + good.replace(b"\n", b" \t\r\n\t").replace(b"seed ", b"seed\t  ") + b"\n"
    for what, variant in (("upper-case hex", upper), ("spaces, tabs and blank lines around lines", spaced)):
        expect_eq(iut.ok("key_file", data=variant).get("peer_id"), str(REF.peer_id), f"peer id ({what})")
    inside = good.replace(b"seed " + seed[:2], b"seed " + seed[:2] + b" ")
    expect_eq(iut.error("key_file", data=inside), "INVALID_KEY_FILE", "white space inside the seed")
