"""Write the signature verification edge vectors (spec/vectors/signature_edges.json).

Run from the repository root::

    /tmp/v/bin/python spec/vectors/generate_signatures.py           # (re)write signature_edges.json
    /tmp/v/bin/python spec/vectors/generate_signatures.py --check   # exit 1 if it differs

One vector per edge of the verification rule of spec/identity.md §3.2, each with its verdict.
The curve arithmetic is written out here in plain Python (affine Edwards coordinates), apart
from any Ed25519 library, so that the vectors do not inherit a library's choices: the verdict of
each vector is the one its edge names, checked against ``strict_verify`` (the rule of §3.2
written as code), and each vector also says whether the bare equation holds cofactorless
(``[S]B = R + [k]A``) and cofactored (``[8][S]B = [8]R + [8][k]A``), so a reader sees what
a verifier that skips one check would wrongly accept.  The signer's seed and the nonce
``r`` are fixed (``BLAKE2b-256("p2pos test vector: " || label)`` as in ``generate.py``);
messages that must give a challenge ``k`` of a given residue are found by counting up a suffix.
``build_vectors()`` returns ``{file name: JSON text}`` as ``generate.py`` does.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

Json = dict[str, Any]
Point = tuple[int, int]

#: The field prime, the group order L and the curve constant d of Ed25519 (RFC 8032 §5.1).
P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
_SQRT_M1 = pow(2, (P - 1) // 4, P)
IDENTITY: Point = (0, 1)
DOMAIN = b"p2pos/example"
SIG_PREFIX = b"p2pos-sig-v1\x00"


def fixed(label: str) -> bytes:
    """32 fixed bytes named by ``label``: BLAKE2b-256("p2pos test vector: " || label)."""
    return hashlib.blake2b(b"p2pos test vector: " + label.encode(), digest_size=32).digest()


# -- curve arithmetic (affine twisted Edwards, -x^2 + y^2 = 1 + d x^2 y^2) ----------------------


def _inv(x: int) -> int:
    return pow(x, P - 2, P)


def add(a: Point, b: Point) -> Point:
    (x1, y1), (x2, y2) = a, b
    t = D * x1 * x2 * y1 * y2 % P
    return (x1 * y2 + x2 * y1) * _inv(1 + t) % P, (y1 * y2 + x1 * x2) * _inv(1 - t) % P


def neg(a: Point) -> Point:
    return -a[0] % P, a[1]


def _add_extended(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """Addition in extended coordinates (X, Y, Z, T), RFC 8032 §5.1.4."""
    (x1, y1, z1, t1), (x2, y2, z2, t2) = a, b
    big_a, big_b = (y1 - x1) * (y2 - x2) % P, (y1 + x1) * (y2 + x2) % P
    big_c, big_d = 2 * D * t1 * t2 % P, 2 * z1 * z2 % P
    e, f, g, h = big_b - big_a, big_d - big_c, big_d + big_c, big_b + big_a
    return e * f % P, g * h % P, f * g % P, e * h % P


def mul(k: int, a: Point) -> Point:
    """[k]a, by double and add in extended coordinates."""
    out, step = (0, 1, 1, 0), (a[0], a[1], 1, a[0] * a[1] % P)
    while k:
        if k & 1:
            out = _add_extended(out, step)
        step = _add_extended(step, step)
        k >>= 1
    z = _inv(out[2])
    return out[0] * z % P, out[1] * z % P


def x_for(y: int, sign: int) -> int | None:
    """The x with low bit ``sign`` of the point with this y (y < p), or None if there is none."""
    u, v = (y * y - 1) % P, (D * y * y + 1) % P
    x2 = u * _inv(v) % P
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P:
        x = x * _SQRT_M1 % P
    if (x * x - x2) % P:
        return None
    if x == 0 and sign:
        return None  # -0 is not an x
    return x if x & 1 == sign else P - x


def encode(a: Point) -> bytes:
    return (a[1] | (a[0] & 1) << 255).to_bytes(32, "little")


def decode_lenient(data: bytes) -> Point | None:
    """The point an encoding names, reducing y mod p and allowing x = 0 with the sign bit set."""
    n = int.from_bytes(data, "little")
    y, sign = n & (2**255 - 1), n >> 255
    y %= P
    x = x_for(y, sign)
    if x is None and sign:
        x = x_for(y, 0)
        if x != 0:
            return None
    return None if x is None else (x, y)


BASE: Point = (x_for(4 * _inv(5) % P, 0) or 0, 4 * _inv(5) % P)
#: A point of order 8 (its encoding: c7176a70...ac037a); its multiples are the 8 small-order points.
T8 = decode_lenient(bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")) or IDENTITY
TORSION = [mul(i, T8) for i in range(8)]
ORDERS = [1, 8, 4, 8, 2, 8, 4, 8]


def small_order_encodings() -> list[tuple[str, bytes, int]]:
    """Every 32-byte string that decodes (leniently) to a small-order point: (name, bytes, order).

    The 8 canonical encodings, then the 6 others: y = p and y = p + 1 (y >= p, each with either
    sign bit), and x = 0 with the sign bit set (y = 1 and y = p - 1).
    """
    out = [(f"T{i}-order-{ORDERS[i]}" if i else "identity", encode(t), ORDERS[i]) for i, t in enumerate(TORSION)]
    top = 1 << 255
    for name, y, order in (("y=p", P, 4), ("y=p+1", P + 1, 1)):
        out.append((name, y.to_bytes(32, "little"), order))
        out.append((f"{name} sign 1", (y | top).to_bytes(32, "little"), order))
    out.append(("y=1 sign 1", (1 | top).to_bytes(32, "little"), 1))
    out.append(("y=p-1 sign 1", (P - 1 | top).to_bytes(32, "little"), 2))
    return out


#: The blocked y values (bit 255 cleared) of spec/identity.md §3.2: every small-order encoding.
BLOCKED = sorted({int.from_bytes(e, "little") & (2**255 - 1) for _, e, _ in small_order_encodings()})


# -- signatures ----------------------------------------------------------------------------------


def signed(domain: bytes, message: bytes) -> bytes:
    return SIG_PREFIX + bytes([len(domain)]) + domain + message


def challenge(r: bytes, a: bytes, domain: bytes, message: bytes) -> int:
    return int.from_bytes(hashlib.sha512(r + a + signed(domain, message)).digest(), "little") % L


def secret_scalar(seed: bytes) -> int:
    h = hashlib.sha512(seed).digest()
    return (int.from_bytes(h[:32], "little") & (2**254 - 8)) | 2**254


def equations(public_key: bytes, domain: bytes, message: bytes, signature: bytes) -> tuple[bool | None, bool | None]:
    """(cofactorless, cofactored): whether the bare equation holds, None when A or R names no point."""
    if len(public_key) != 32 or len(signature) != 64:
        return None, None
    a, r = decode_lenient(public_key), decode_lenient(signature[:32])
    if a is None or r is None:
        return None, None
    s = int.from_bytes(signature[32:], "little")
    k = challenge(signature[:32], public_key, domain, message)
    left, right = mul(s, BASE), add(r, mul(k, a))
    return left == right, mul(8, left) == mul(8, right)


def strict_verify(public_key: bytes, domain: bytes, message: bytes, signature: bytes) -> bool:
    """The verification rule of spec/identity.md §3.2, step by step."""
    if len(public_key) != 32 or len(signature) != 64:  # ID-3.2.6, ID-3.2.7
        return False
    r, s = signature[:32], int.from_bytes(signature[32:], "little")
    if s >= L:  # ID-3.2.2
        return False
    y = int.from_bytes(public_key, "little") & (2**255 - 1)
    if y >= P or x_for(y, public_key[31] >> 7) is None:  # ID-3.2.3
        return False
    if y in BLOCKED:  # ID-3.2.4
        return False
    if int.from_bytes(r, "little") & (2**255 - 1) in BLOCKED:  # ID-3.2.5
        return False
    a = decode_lenient(public_key) or IDENTITY
    k = challenge(r, public_key, domain, message)
    return encode(add(mul(s, BASE), neg(mul(k, a)))) == r  # ID-3.2.8: cofactorless, R byte for byte


# -- the edges ---------------------------------------------------------------------------------------


def _message_where(name: str, ok: Callable[[bytes], bool]) -> bytes:
    """The first message ``edge: name #n`` for which ``ok`` holds."""
    for n in range(1000):
        message = f"edge: {name} #{n}".encode()
        if ok(message):
            return message
    raise RuntimeError(f"no message found for {name}")


def _k_multiple_of(r: bytes, public_key: bytes, order: int) -> Callable[[bytes], bool]:
    return lambda message: challenge(r, public_key, DOMAIN, message) % order == 0


def edge_vectors() -> Json:
    seed = fixed("signature edges: signer")
    a = secret_scalar(seed)
    key_point = mul(a, BASE)
    key = encode(key_point)
    r = int.from_bytes(fixed("signature edges: nonce"), "little") % L
    big_r = encode(mul(r, BASE))
    vectors: list[Json] = []

    def add_vector(name: str, rules: list[str], note: str, valid: bool, *inputs: bytes) -> None:
        """Append one vector; ``inputs`` are the public key, the message and the signature."""
        public_key, message, signature = inputs
        if strict_verify(public_key, DOMAIN, message, signature) is not valid:
            raise RuntimeError(f"{name}: the rule of §3.2 does not give {valid}")
        cofactorless, cofactored = equations(public_key, DOMAIN, message, signature)
        vectors.append(
            {
                "name": name,
                "requirements": rules,
                "note": note,
                "public_key": public_key.hex(),
                "domain": DOMAIN.hex(),
                "message": message.hex(),
                "signature": signature.hex(),
                "valid": valid,
                "cofactorless_equation": cofactorless,
                "cofactored_equation": cofactored,
            }
        )

    def honest(message: bytes) -> bytes:
        return big_r + ((r + challenge(big_r, key, DOMAIN, message) * a) % L).to_bytes(32, "little")

    message = b"edge: ordinary"
    good = honest(message)
    add_vector("ordinary", ["ID-3.2.1"], "an ordinary signature by the signer", True, key, message, good)
    s = int.from_bytes(good[32:], "little")
    for name, extra in (("S+L", L), ("S+8L", 8 * L)):
        add_vector(
            f"s-{name}",
            ["ID-3.2.2"],
            f"the ordinary signature with {name} for S: the equation holds, S is not below L",
            False,
            key,
            message,
            good[:32] + (s + extra).to_bytes(32, "little"),
        )
    for length in (0, 63, 65):
        add_vector(
            f"signature-{length}-bytes",
            ["ID-3.2.6"],
            f"a {length}-byte signature: invalid, not an error",
            False,
            key,
            message,
            (good + b"\x00")[:length],
        )
    for length in (0, 31, 33):
        add_vector(
            f"key-{length}-bytes",
            ["ID-3.2.7"],
            f"a {length}-byte public key: invalid, not an error",
            False,
            (key + b"\x00")[:length],
            message,
            good,
        )
    # A key whose y is p + 3: y = 3 is on the curve, so a lenient decoder finds a point.
    for name, public_key, note in (
        ("key-y-above-p", (P + 3).to_bytes(32, "little"), "a key whose y is p + 3 (y = 3 names a point)"),
        ("key-not-a-point", (2).to_bytes(32, "little"), "a key whose y = 2 names no curve point"),
    ):
        add_vector(name, ["ID-3.2.3"], note, False, public_key, message, good)
    # Small-order keys: R = [r]B, S = r and a message whose k is a multiple of the key's order make
    # [S]B = R + [k]A hold, for any key of small order: a forgery without the secret key.
    for name, public_key, order in small_order_encodings():
        canonical = (
            decode_lenient(public_key) is not None and encode(decode_lenient(public_key) or IDENTITY) == public_key
        )
        forged_message = _message_where(f"key {name}", _k_multiple_of(big_r, public_key, order))
        add_vector(
            f"key-small-order-{name}",
            ["ID-3.2.4"] if canonical else ["ID-3.2.3", "ID-3.2.4"],
            f"small-order key {public_key.hex()[:8]}..{public_key.hex()[-2:]} (order {order}"
            + ("" if canonical else ", non-canonical encoding")
            + "): R = [r]B, S = r forges any message whose k is a multiple of the order",
            False,
            public_key,
            forged_message,
            big_r + r.to_bytes(32, "little"),
        )
    # Small-order R with the signer's key: S = k·a gives [S]B = [k]A, so the equation holds
    # cofactorless for R = identity and cofactored for every small-order R.
    for name, small, order in small_order_encodings():
        k = challenge(small, key, DOMAIN, message)
        add_vector(
            f"r-small-order-{name}",
            ["ID-3.2.5"],
            f"R = {small.hex()[:8]}..{small.hex()[-2:]} (order {order}), S = k·a: equation holds "
            + ("cofactorless" if small == encode(IDENTITY) else "cofactored only"),
            False,
            key,
            message,
            small + (k * a % L).to_bytes(32, "little"),
        )
    # Mixed order (prime-order part plus a point of order 8): the equations part.
    mixed_r = encode(add(mul(r, BASE), T8))
    add_vector(
        "r-mixed-order",
        ["ID-3.2.8"],
        "R = [r]B + T (T of order 8), S = r + k·a: holds only cofactored, so invalid",
        False,
        key,
        message,
        mixed_r + ((r + challenge(mixed_r, key, DOMAIN, message) * a) % L).to_bytes(32, "little"),
    )
    mixed_key = encode(add(key_point, T8))

    def mixed_key_signature(m: bytes) -> bytes:
        return big_r + ((r + challenge(big_r, mixed_key, DOMAIN, m) * a) % L).to_bytes(32, "little")

    m_off = _message_where("mixed key k not 0 mod 8", lambda m: challenge(big_r, mixed_key, DOMAIN, m) % 8 != 0)
    add_vector(
        "key-mixed-order-cofactored-only",
        ["ID-3.2.8"],
        "key A + T (T of order 8), R = [r]B, S = r + k·a, k not a multiple of 8: holds only cofactored",
        False,
        mixed_key,
        m_off,
        mixed_key_signature(m_off),
    )
    m_on = _message_where("mixed key k 0 mod 8", lambda m: challenge(big_r, mixed_key, DOMAIN, m) % 8 == 0)
    add_vector(
        "key-mixed-order-valid",
        ["ID-3.2.10"],
        "key A + T (T of order 8), k a multiple of 8: [k]T vanishes, the cofactorless equation holds: valid",
        True,
        mixed_key,
        m_on,
        mixed_key_signature(m_on),
    )
    # Both mixed: R = [r]B + [j]T with j = -k mod 8 makes the cofactorless equation hold.
    j = 3
    both_r = encode(add(mul(r, BASE), TORSION[j]))
    m_both = _message_where("mixed key and R", lambda m: (challenge(both_r, mixed_key, DOMAIN, m) + j) % 8 == 0)
    add_vector(
        "key-and-r-mixed-order-valid",
        ["ID-3.2.10"],
        "key A + T and R = [r]B + [3]T with k + 3 a multiple of 8: the cofactorless equation holds: valid",
        True,
        mixed_key,
        m_both,
        both_r + ((r + challenge(both_r, mixed_key, DOMAIN, m_both) * a) % L).to_bytes(32, "little"),
    )
    return {
        "description": (
            "Ed25519 verification edges of p2pos (domain-separated signatures, 'p2pos-sig-v1' || 0x00 || u8 "
            "len(domain) || domain || message): one vector per edge of the rule, each with the verdict every "
            "p2pos verifier must give. 'cofactorless_equation' and 'cofactored_equation' say whether [S]B = R + [k]A "
            "and [8][S]B = [8]R + [8][k]A hold for the points A and R name (y reduced mod p; null when A or R names "
            "no point or a length is wrong): a vector whose equation holds but whose verdict is false is refused by "
            "one check alone. 'blocked_y' lists the 255-bit values (bit 255 cleared, little-endian hex) that no key "
            "and no R may have. The signer's seed is BLAKE2b-256('p2pos test vector: signature edges: signer'), its "
            "nonce r BLAKE2b-256('p2pos test vector: signature edges: nonce') mod L."
        ),
        "spec": "spec/identity.md §3.2",
        "signer": {"seed": seed.hex(), "public_key": key.hex()},
        "blocked_y": [y.to_bytes(32, "little").hex() for y in BLOCKED],
        "vectors": vectors,
    }


# -- output --------------------------------------------------------------------------------------


def build_vectors() -> dict[str, str]:
    """The vector file's name and exact text."""
    return {"signature_edges.json": json.dumps(edge_vectors(), indent=2, ensure_ascii=False) + "\n"}


def _frames_generator() -> ModuleType:
    """generate_frames.py, which holds the command line all generators share."""
    spec = importlib.util.spec_from_file_location("generate_frames", Path(__file__).with_name("generate_frames.py"))
    if spec is None or spec.loader is None:
        raise RuntimeError("generate_frames.py not found beside generate_signatures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    status: int = _frames_generator().write_or_check(
        build_vectors(), argv, script="generate_signatures.py", doc=__doc__
    )
    return status


if __name__ == "__main__":
    sys.exit(main())
