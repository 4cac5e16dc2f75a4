#!/usr/bin/env python3
"""Handshakes per second and record throughput: p2pos against noiseprotocol and raw AEAD.

Run ``python bench/handshake_record.py`` (about a minute), ``--quick`` for a
smoke run, ``--seconds S`` / ``--rounds N`` to scale.  bench/README.md says what
every figure means and which targets apply.  The last line of stdout is one
JSON object: ``{"bench": "handshake_record", "figures": {...}, "ratios": {...}, ...}``.

Everything runs in memory in one process: two endpoints of each protocol hand
their bytes to each other directly, so the figures are the CPU cost of the
protocol code and its crypto, both sides together, with no I/O.
"""

from __future__ import annotations

import itertools
import os
import platform
import sys
from collections.abc import Callable
from importlib import metadata

import nacl.bindings
from _common import (
    Contender,
    Result,
    Settings,
    emit_json,
    parse_settings,
    print_figures,
    print_ratios,
    run_rounds,
    say,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from noise.connection import Keypair, NoiseConnection

from p2pos.proto import HandshakeCompleted, Identity, LocalKeys, MessageReceived, SecureSession, SessionConfig
from p2pos.proto.handshake.handshake import PROLOGUE, BindingCache
from p2pos.proto.session.record import HEADER_LEN, RecordReceiver, RecordSender
from p2pos.proto.session.wire import PacketType

SIZES = (1200, 16384)
NOISE_XX = b"Noise_XX_25519_ChaChaPoly_BLAKE2b"
NOISE_IK = b"Noise_IK_25519_ChaChaPoly_BLAKE2b"
NOW = 0.0  # a fixed clock: no time-based rekey or expiry fires during the run

#: ratio key -> minimum it should reach (bench/README.md explains each).
TARGETS: dict[str, float] = {
    "p2pos_xx_vs_noise_xx_handshakes": 1.5,
    "p2pos_record_vs_raw_aead_1200": 0.8,
    "p2pos_record_vs_raw_aead_16384": 0.8,
    "p2pos_record_vs_noise_record_1200": 1.5,
}


class BenchError(RuntimeError):
    """A contender produced a wrong result: the figures would be meaningless."""


def _only(datagrams: list[bytes]) -> bytes:
    if len(datagrams) != 1:
        raise BenchError(f"expected one datagram, got {len(datagrams)}")
    return datagrams[0]


# -- p2pos ---------------------------------------------------------------------


def p2pos_handshake(
    keys_a: LocalKeys, keys_b: LocalKeys, config: SessionConfig, *, ik: bool, returning: bool = False
) -> Callable[[], None]:
    """One complete handshake until both sides announced HandshakeCompleted.

    XX: INIT, RESPONSE, FINISH, with both identity payloads verified.  IK: INIT,
    RESPONSE, then the initiator's CONFIRM record that confirms the keys to the responder.
    Fresh ephemerals each time (the default ``random``).  ``returning``: each side keeps a
    BindingCache, as an Endpoint does, so a peer seen before costs no Ed25519 verification;
    without it every handshake verifies both identity signatures (first contact).
    """
    remote = keys_b.static_public if ik else None
    cache_a = BindingCache() if returning else None
    cache_b = BindingCache() if returning else None

    def op() -> None:
        a = SecureSession.initiate(
            keys_a, local_index=1, now=NOW, config=config, remote_static=remote, binding_cache=cache_a
        )
        b = SecureSession.respond_untrusted(
            keys_b, _only(a.data_to_send(NOW)), local_index=2, now=NOW, config=config, binding_cache=cache_b
        )
        a.receive_data(_only(b.data_to_send(NOW)), NOW)
        b.receive_data(_only(a.data_to_send(NOW)), NOW)  # FINISH (XX) or CONFIRM (IK)
        if not (isinstance(a.next_event(), HandshakeCompleted) and isinstance(b.next_event(), HandshakeCompleted)):
            raise BenchError("p2pos handshake did not complete")

    return op


def p2pos_session_pair(
    keys_a: LocalKeys, keys_b: LocalKeys, config: SessionConfig
) -> tuple[SecureSession, SecureSession]:
    a = SecureSession.initiate(keys_a, local_index=1, now=NOW, config=config)
    b = SecureSession.respond_untrusted(keys_b, _only(a.data_to_send(NOW)), local_index=2, now=NOW, config=config)
    a.receive_data(_only(b.data_to_send(NOW)), NOW)
    b.receive_data(_only(a.data_to_send(NOW)), NOW)
    if not (a.is_established and b.is_established):
        raise BenchError("p2pos handshake did not complete")
    a.next_event()
    b.next_event()
    return a, b


def p2pos_record(size: int, config: SessionConfig) -> Callable[[], None]:
    """RecordSender.seal then RecordReceiver.open_untrusted: what a session does per record."""
    key = os.urandom(32)
    sender = RecordSender(
        key,
        7,
        NOW,
        rekey_after_messages=config.rekey_after_messages,
        rekey_after_seconds=config.rekey_after_seconds,
    )
    receiver = RecordReceiver(key, previous_key_grace=config.previous_key_grace)
    data = os.urandom(size)
    if receiver.open_untrusted(sender.seal(PacketType.DATA, data, NOW), NOW) != (PacketType.DATA, data):
        raise BenchError("p2pos record did not round-trip")
    seal, open_untrusted, ptype = sender.seal, receiver.open_untrusted, int(PacketType.DATA)

    def op() -> None:
        if open_untrusted(seal(ptype, data, NOW), NOW) is None:
            raise BenchError("p2pos record did not open")

    return op


def p2pos_session_record(size: int, keys_a: LocalKeys, keys_b: LocalKeys, config: SessionConfig) -> Callable[[], None]:
    """The full session path: send, data_to_send, receive_data, next_event."""
    a, b = p2pos_session_pair(keys_a, keys_b, config)
    data = os.urandom(size)

    def op() -> None:
        a.send(data, NOW)
        b.receive_data(_only(a.data_to_send(NOW)), NOW)
        if not isinstance(b.next_event(), MessageReceived):
            raise BenchError("p2pos session did not deliver the message")

    op()
    return op


# -- noiseprotocol -------------------------------------------------------------


def _noise_pair(name: bytes, s_i: bytes, s_r: bytes, r_pub: bytes | None) -> tuple[NoiseConnection, NoiseConnection]:
    initiator = NoiseConnection.from_name(name)
    initiator.set_as_initiator()
    initiator.set_prologue(PROLOGUE)
    initiator.set_keypair_from_private_bytes(Keypair.STATIC, s_i)
    if r_pub is not None:
        initiator.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, r_pub)
    responder = NoiseConnection.from_name(name)
    responder.set_as_responder()
    responder.set_prologue(PROLOGUE)
    responder.set_keypair_from_private_bytes(Keypair.STATIC, s_r)
    initiator.start_handshake()
    responder.start_handshake()
    return initiator, responder


def noise_handshake(*, ik: bool) -> Callable[[], None]:
    """One Noise_XX (or IK) handshake with empty payloads, between two NoiseConnections.

    The static private keys are generated once, outside the timed loop.  The
    library has no public way to share a key pair object between connections,
    so each connection gets them with ``set_keypair_from_private_bytes``, which
    derives the public key (one X25519 base multiplication per side, as p2pos's
    HandshakeState also does).  Ephemerals are fresh (the library generates them).
    """
    name = NOISE_IK if ik else NOISE_XX
    s_i, s_r = os.urandom(32), os.urandom(32)
    r_pub = _noise_static_public(s_r) if ik else None

    def op() -> None:
        initiator, responder = _noise_pair(name, s_i, s_r, r_pub)
        responder.read_message(bytes(initiator.write_message()))
        initiator.read_message(bytes(responder.write_message()))
        if not ik:
            responder.read_message(bytes(initiator.write_message()))
        if not (initiator.handshake_finished and responder.handshake_finished):
            raise BenchError("noise handshake did not complete")

    return op


def _noise_static_public(private: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()


def noise_record(size: int) -> Callable[[], None]:
    """NoiseConnection.encrypt on one side, decrypt on the other, after a completed XX handshake."""
    initiator, responder = _noise_pair(NOISE_XX, os.urandom(32), os.urandom(32), None)
    responder.read_message(bytes(initiator.write_message()))
    initiator.read_message(bytes(responder.write_message()))
    responder.read_message(bytes(initiator.write_message()))
    data = os.urandom(size)
    if responder.decrypt(initiator.encrypt(data)) != data:
        raise BenchError("noise record did not round-trip")
    encrypt, decrypt = initiator.encrypt, responder.decrypt

    def op() -> None:
        decrypt(encrypt(data))  # raises NoiseInvalidMessage on failure

    return op


# -- raw AEAD ------------------------------------------------------------------


def raw_aead(size: int) -> Callable[[], None]:
    """cryptography's ChaCha20Poly1305 encrypt then decrypt: a 14-byte AD, a counter nonce.

    The ceiling for the record layer, which is this plus a header and replay window.
    """
    key = os.urandom(32)
    encrypt, decrypt = ChaCha20Poly1305(key).encrypt, ChaCha20Poly1305(key).decrypt
    ad = os.urandom(HEADER_LEN)
    data = os.urandom(size)
    counter = itertools.count()
    prefix = b"\x00\x00\x00\x00"

    def op() -> None:
        nonce = prefix + next(counter).to_bytes(8, "little")
        decrypt(nonce, encrypt(nonce, data, ad), ad)  # raises InvalidTag on failure

    return op


def pynacl_aead(size: int) -> Callable[[], None]:
    """PyNaCl's (libsodium's) ChaCha20-Poly1305 binding, same inputs as ``raw_aead``.

    Informational: it backs the claim in p2pos_proto/identity/crypto.py that the record
    layer is faster on cryptography's AEAD than on this one.
    """
    key = os.urandom(32)
    ad = os.urandom(HEADER_LEN)
    data = os.urandom(size)
    counter = itertools.count()
    prefix = b"\x00\x00\x00\x00"
    encrypt = nacl.bindings.crypto_aead_chacha20poly1305_ietf_encrypt
    decrypt = nacl.bindings.crypto_aead_chacha20poly1305_ietf_decrypt

    def op() -> None:
        nonce = prefix + next(counter).to_bytes(8, "little")
        decrypt(encrypt(data, ad, nonce, key), ad, nonce, key)  # raises CryptoError on failure

    return op


# -- assembly ------------------------------------------------------------------


def contenders() -> list[Contender]:
    """Everything measured, in the order related figures sit next to each other."""
    # Identities and static keys are long-lived in real use: made once, outside the timed loop.
    keys_a = LocalKeys.generate(Identity.generate())
    keys_b = LocalKeys.generate(Identity.generate())
    config = SessionConfig()
    out = [
        Contender(
            key="p2pos_xx_handshakes_per_s",
            label="p2pos XX handshake",
            op=p2pos_handshake(keys_a, keys_b, config, ik=False),
            unit="handshakes/s",
        ),
        Contender(
            key="p2pos_xx_returning_handshakes_per_s",
            label="p2pos XX handshake, returning peer",
            op=p2pos_handshake(keys_a, keys_b, config, ik=False, returning=True),
            unit="handshakes/s",
        ),
        Contender(
            key="noise_xx_handshakes_per_s",
            label="noiseprotocol XX handshake",
            op=noise_handshake(ik=False),
            unit="handshakes/s",
        ),
        Contender(
            key="p2pos_ik_handshakes_per_s",
            label="p2pos IK handshake",
            op=p2pos_handshake(keys_a, keys_b, config, ik=True),
            unit="handshakes/s",
        ),
        Contender(
            key="noise_ik_handshakes_per_s",
            label="noiseprotocol IK handshake",
            op=noise_handshake(ik=True),
            unit="handshakes/s",
        ),
    ]
    for size in SIZES:
        mb = size / 1e6
        out += [
            Contender(
                key=f"p2pos_record_MBps_{size}",
                label=f"p2pos record seal+open {size} B",
                op=p2pos_record(size, config),
                scale=mb,
                unit="MB/s",
            ),
            Contender(
                key=f"raw_aead_MBps_{size}",
                label=f"raw ChaCha20Poly1305 {size} B",
                op=raw_aead(size),
                scale=mb,
                unit="MB/s",
            ),
            Contender(
                key=f"pynacl_aead_MBps_{size}",
                label=f"PyNaCl ChaCha20Poly1305 {size} B",
                op=pynacl_aead(size),
                scale=mb,
                unit="MB/s",
            ),
            Contender(
                key=f"noise_record_MBps_{size}",
                label=f"noiseprotocol encrypt+decrypt {size} B",
                op=noise_record(size),
                scale=mb,
                unit="MB/s",
            ),
            Contender(
                key=f"p2pos_session_MBps_{size}",
                label=f"p2pos session send..next_event {size} B",
                op=p2pos_session_record(size, keys_a, keys_b, config),
                scale=mb,
                unit="MB/s",
            ),
        ]
    return out


def ratios(figures: dict[str, float]) -> dict[str, float]:
    """The target ratios first, then informational ones."""

    def ratio(num: str, den: str) -> float:
        return figures[num] / figures[den] if figures[den] else float("inf")

    return {
        "p2pos_xx_vs_noise_xx_handshakes": ratio("p2pos_xx_handshakes_per_s", "noise_xx_handshakes_per_s"),
        "p2pos_record_vs_raw_aead_1200": ratio("p2pos_record_MBps_1200", "raw_aead_MBps_1200"),
        "p2pos_record_vs_raw_aead_16384": ratio("p2pos_record_MBps_16384", "raw_aead_MBps_16384"),
        "p2pos_record_vs_noise_record_1200": ratio("p2pos_record_MBps_1200", "noise_record_MBps_1200"),
        # informational, no target
        "p2pos_xx_returning_vs_noise_xx_handshakes": ratio(
            "p2pos_xx_returning_handshakes_per_s", "noise_xx_handshakes_per_s"
        ),
        "p2pos_ik_vs_noise_ik_handshakes": ratio("p2pos_ik_handshakes_per_s", "noise_ik_handshakes_per_s"),
        "p2pos_ik_vs_p2pos_xx_handshakes": ratio("p2pos_ik_handshakes_per_s", "p2pos_xx_handshakes_per_s"),
        "p2pos_record_vs_noise_record_16384": ratio("p2pos_record_MBps_16384", "noise_record_MBps_16384"),
        "raw_aead_vs_pynacl_aead_1200": ratio("raw_aead_MBps_1200", "pynacl_aead_MBps_1200"),
        "raw_aead_vs_pynacl_aead_16384": ratio("raw_aead_MBps_16384", "pynacl_aead_MBps_16384"),
        "p2pos_session_vs_record_1200": ratio("p2pos_session_MBps_1200", "p2pos_record_MBps_1200"),
        "p2pos_session_vs_record_16384": ratio("p2pos_session_MBps_16384", "p2pos_record_MBps_16384"),
    }


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


def report(results: list[Result], settings: Settings) -> dict[str, object]:
    figures = {r.contender.key: r.median for r in results}
    print_figures(results, width=42, value_width=12, digits=1)
    computed = ratios(figures)
    met = print_ratios(computed, TARGETS, width=42, digits=2)
    return {
        "bench": "handshake_record",
        "figures": {k: round(v, 3) for k, v in figures.items()},
        "ratios": {k: round(v, 4) for k, v in computed.items()},
        "targets": TARGETS,
        "targets_met": met,
        "settings": {"rounds": settings.rounds, "seconds_per_contender_per_round": settings.seconds},
    }


def main(argv: list[str] | None = None) -> int:
    settings = parse_settings(__doc__.splitlines()[0] if __doc__ else "", argv)
    say(
        f"handshake_record: python {platform.python_version()}, cryptography {_version('cryptography')}, "
        f"PyNaCl {_version('PyNaCl')}, noiseprotocol {_version('noiseprotocol')}, {os.cpu_count()} CPUs"
    )
    todo = contenders()
    say(
        f"{len(todo)} contenders x {settings.rounds} rounds x {settings.seconds:g} s, interleaved "
        f"(about {len(todo) * (settings.rounds * settings.seconds + settings.warmup):.0f} s)"
    )
    results = run_rounds(todo, settings, log=say)
    emit_json(report(results, settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
