"""The reference peer: fixed keys, hand-built handshakes and records, all from ``p2pos.proto``.

Cases drive the IUT through ``Iut`` and play the other side with the pieces
here.  ``Hand`` is a bare Noise handshake whose payloads a case writes itself
(so it can send an unknown critical field, a bad signature, a wrong session
index or a nonce that does not open its commitment); ``Link`` holds the
transport keys of an established session and seals and opens records with any
counter and epoch.  ``establish`` runs a normal handshake with the IUT and
returns the ``Link``.  The SAS commitment and the SAS itself are recomputed
here with ``hashlib`` from spec/handshake.md §7, not taken from the core.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from typing import Any

from p2pos.proto.errors import ProtocolError
from p2pos.proto.handshake.handshake import PROLOGUE, LocalKeys, verify_peer_payload_untrusted
from p2pos.proto.handshake.noise import HandshakeState, Pattern
from p2pos.proto.handshake.payload import (
    CAP_MAX_RECORD_PLAINTEXT,
    F_CAPABILITIES,
    F_IDENTITY_KEY,
    F_IDENTITY_SIG,
    F_PADDING,
    F_SAS_COMMITMENT,
    F_SAS_NONCE,
    F_SESSION_INDEX,
    F_VERSIONS,
    HandshakePayload,
    encode_fields,
)
from p2pos.proto.identity import crypto
from p2pos.proto.identity.identity import DOMAIN_NOISE_STATIC, Identity
from p2pos.proto.identity.peer_id import PeerId
from p2pos.proto.session.record import MAX_PLAINTEXT
from p2pos.proto.session.wire import (
    RECORD_HEADER,
    PacketType,
    encode_finish,
    encode_init,
    encode_response,
    parse_handshake_untrusted,
)

from .checks import CaseFailed, expect, expect_eq, short, unhex_list
from .iut import Iut

#: Session indices: the IUT's and the reference peer's.
IUT_INDEX = 0x1A2B3C4D
REF_INDEX = 0x5E6F7081
#: The smallest INIT a responder answers, and its send budget per INIT byte (spec/handshake.md §8).
MIN_INIT_SIZE = 320
AMPLIFICATION_FACTOR = 3
#: Bytes of an INIT before its payload: type, pattern, index, ephemeral; IK adds the sealed static and two tags.
INIT_OVERHEAD = {Pattern.XX: 6 + 32, Pattern.IK: 6 + 32 + 48 + 16}


def derive(label: str) -> bytes:
    """32 fixed bytes named by ``label`` (keys, seeds, ephemerals, SAS nonces)."""
    return hashlib.blake2b(label.encode(), digest_size=32, person=b"p2pos-conform").digest()


def sas_commitment(nonce: bytes) -> bytes:
    """The INIT's commitment to the initiator's SAS nonce, from spec/handshake.md §7 (not from the core)."""
    return hashlib.blake2b(nonce, digest_size=32, key=b"p2pos-sas-commit").digest()


def reference_sas(hash_after_message_2: bytes, nonce: bytes) -> str:
    """The SAS of spec/handshake.md §7: 12 digits of keyed BLAKE2b(h2 || nonce), in groups of four."""
    digest = hashlib.blake2b(hash_after_message_2 + nonce, digest_size=8, key=b"p2pos-sas-v1").digest()
    text = f"{int.from_bytes(digest, 'big') % 10**12:012d}"
    return f"{text[0:4]} {text[4:8]} {text[8:12]}"


def nonce_source(nonce: bytes) -> crypto.RandomSource:
    """A random source for a reference ``SecureSession`` that draws exactly one SAS nonce: ``nonce``."""

    def source(n: int) -> bytes:
        if n != len(nonce):
            raise CaseFailed(f"internal: the reference session asked for {n} random bytes, not a SAS nonce")
        return nonce

    return source


@dataclasses.dataclass(frozen=True, slots=True)
class Party:
    """One side's fixed key material: identity seed, Noise static and ephemeral keys, SAS nonce."""

    name: str
    seed: bytes
    static: bytes
    ephemeral: bytes
    sas_nonce: bytes

    @classmethod
    def named(cls, name: str) -> Party:
        return cls(
            name,
            derive(f"{name}/identity"),
            derive(f"{name}/static"),
            derive(f"{name}/ephemeral"),
            derive(f"{name}/sas-nonce"),
        )

    @property
    def identity(self) -> Identity:
        return _identity(self.seed)

    @property
    def keys(self) -> LocalKeys:
        return LocalKeys.create(self.identity, self.static)

    @property
    def peer_id(self) -> PeerId:
        return self.identity.peer_id

    @property
    def static_public(self) -> bytes:
        return crypto.x25519_public(self.static)


@functools.cache
def _identity(seed: bytes) -> Identity:
    return Identity.from_seed(seed)


IUT = Party.named("iut")
REF = Party.named("ref")
OTHER = Party.named("other")

# -- talking to the IUT's session ----------------------------------------------------


def start_session(
    iut: Iut,
    role: str,
    *,
    party: Party = IUT,
    remote_static: bytes | None = None,
    expected_peer: PeerId | None = None,
    now: float = 0.0,
    config: dict[str, Any] | None = None,
    command: str = "session",
    extra: dict[str, Any] | None = None,
) -> list[bytes]:
    """Create the IUT's session (``session`` command); returns the datagrams it sent.

    ``command="conn_session"`` with ``extra`` (its ``services`` and ``channel_config``)
    creates a channel-layer connection instead (spec/conformance.md §3.7).
    """
    answer = iut.ok(
        command,
        **(extra or {}),
        **session_fields(
            role, party=party, remote_static=remote_static, expected_peer=expected_peer, now=now, config=config
        ),
    )
    return out_of(answer)


def session_fields(
    role: str,
    *,
    party: Party = IUT,
    remote_static: bytes | None = None,
    expected_peer: PeerId | None = None,
    local_index: int = IUT_INDEX,
    now: float = 0.0,
    config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The fields of a ``session`` command (spec/conformance.md §3.2) for ``party``'s keys."""
    return {
        "role": role,
        "seed": party.seed,
        "static": party.static,
        "ephemeral": party.ephemeral,
        "sas_nonce": party.sas_nonce if role == "initiator" else None,
        "remote_static": remote_static,
        "expected_peer": str(expected_peer) if expected_peer is not None else None,
        "local_index": local_index,
        "now": now,
        "config": config or {},
    }


def out_of(answer: dict[str, Any]) -> list[bytes]:
    """The datagrams in an answer's ``out`` list."""
    return unhex_list(answer.get("out", []), "out")


def events_of(answer: dict[str, Any], kind: str | None = None) -> list[dict[str, Any]]:
    """The answer's events, optionally only those of type ``kind``."""
    events = answer.get("events", [])
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise CaseFailed(f"events must be a list of objects, got {short(events)}")
    return [e for e in events if kind is None or e.get("type") == kind]


def one_event(answer: dict[str, Any], kind: str) -> dict[str, Any]:
    """The single event of type ``kind``; fail if there is not exactly one."""
    found = events_of(answer, kind)
    expect(len(found) == 1, f"expected one {kind!r} event, got {short(events_of(answer))}")
    return found[0]


def no_event(answer: dict[str, Any], kind: str, why: str) -> None:
    found = events_of(answer, kind)
    expect(not found, f"{why}: unexpected {kind!r} event {short(found)}")


def one_packet(answer: dict[str, Any], ptype: PacketType) -> bytes:
    """The single datagram in ``out``, which must be of type ``ptype``."""
    out = out_of(answer)
    expect(len(out) == 1, f"expected one {ptype.name} datagram, got {len(out)}")
    expect(bool(out[0]) and out[0][0] == ptype, f"expected a {ptype.name} packet, got type {out[0][:1].hex()}")
    return out[0]


def get_timer(iut: Iut) -> float | None:
    """The IUT's next timer (``get_timer``), checked to be a number or null."""
    timer = iut.ok("get_timer").get("timer")
    if timer is None:
        return None
    expect(isinstance(timer, int | float) and not isinstance(timer, bool), f"timer must be a number, got {timer!r}")
    return float(timer)


def session_state(iut: Iut) -> str:
    state = iut.ok("state").get("state")
    expect(isinstance(state, str), f"state must be a string, got {short(state)}")
    return str(state)


# -- hand-built handshakes --------------------------------------------------------------


def versions_payload(versions: tuple[int, ...] = (1,), extra: tuple[tuple[int, bytes], ...] = ()) -> bytes:
    """A payload with only the versions field, plus ``extra`` fields (no index, no commitment, no padding)."""
    return encode_fields([(F_VERSIONS, _versions(versions)), *extra])


def init_payload(
    pattern: Pattern = Pattern.XX,
    *,
    versions: tuple[int, ...] = (1,),
    index: int | None = REF_INDEX,
    nonce: bytes | None = REF.sas_nonce,
    extra: tuple[tuple[int, bytes], ...] = (),
    party: Party = REF,
    signed_static: bytes | None = None,
    max_plaintext: int = MAX_PLAINTEXT,
    size: int = MIN_INIT_SIZE,
) -> bytes:
    """The reference's INIT payload: versions (IK: the identity), ``index``, the commitment to ``nonce``,
    ``extra``, then padding so that the INIT packet is at least ``size`` bytes (exactly, when it can be).

    ``index=None`` or ``nonce=None`` leaves that field out.
    """
    if pattern is Pattern.IK:
        fields = _identity_fields(party, versions=versions, max_plaintext=max_plaintext, signed_static=signed_static)
    else:
        fields = [(F_VERSIONS, _versions(versions))]
    if index is not None:
        fields.append((F_SESSION_INDEX, index.to_bytes(4, "big")))
    if nonce is not None:
        fields.append((F_SAS_COMMITMENT, sas_commitment(nonce)))
    fields.extend(extra)
    short = size - INIT_OVERHEAD[pattern] - len(encode_fields(fields))
    if short > 0:
        fields.append((F_PADDING, bytes(max(short - 4, 0))))
    return encode_fields(fields)


def identity_payload(
    party: Party,
    *,
    versions: tuple[int, ...] = (1,),
    max_plaintext: int = MAX_PLAINTEXT,
    capabilities: tuple[tuple[int, bytes], ...] = (),
    extra: tuple[tuple[int, bytes], ...] = (),
    signed_static: bytes | None = None,
    index: int | None = None,
    sas_nonce: bytes | None = None,
) -> bytes:
    """A payload carrying ``party``'s identity binding; ``signed_static`` forges what the signature covers.

    ``index`` adds the session index field (a RESPONSE), ``sas_nonce`` the SAS nonce field (a FINISH).
    """
    fields = _identity_fields(
        party, versions=versions, max_plaintext=max_plaintext, capabilities=capabilities, signed_static=signed_static
    )
    if index is not None:
        fields.append((F_SESSION_INDEX, index.to_bytes(4, "big")))
    if sas_nonce is not None:
        fields.append((F_SAS_NONCE, sas_nonce))
    return encode_fields([*fields, *extra])


def response_payload(**kw: Any) -> bytes:
    """The reference's RESPONSE payload: its identity and its own index (keywords as ``identity_payload``)."""
    return identity_payload(REF, **{"index": REF_INDEX, **kw})


def finish_payload(**kw: Any) -> bytes:
    """The reference's FINISH payload: its identity and its SAS nonce (keywords as ``identity_payload``)."""
    return identity_payload(REF, **{"sas_nonce": REF.sas_nonce, **kw})


def _identity_fields(
    party: Party,
    *,
    versions: tuple[int, ...],
    max_plaintext: int,
    capabilities: tuple[tuple[int, bytes], ...] = (),
    signed_static: bytes | None = None,
) -> list[tuple[int, bytes]]:
    static = signed_static if signed_static is not None else party.static_public
    caps = sorted([(CAP_MAX_RECORD_PLAINTEXT, max_plaintext.to_bytes(4, "big")), *capabilities])
    return [
        (F_VERSIONS, _versions(versions)),
        (F_IDENTITY_KEY, party.peer_id.public_key),
        (F_IDENTITY_SIG, party.identity.sign(DOMAIN_NOISE_STATIC, static)),
        (F_CAPABILITIES, encode_fields(caps)),
    ]


def _versions(versions: tuple[int, ...]) -> bytes:
    return b"".join(v.to_bytes(2, "big") for v in versions)


def decode_payload(payload: bytes, what: str) -> HandshakePayload:
    """Decode one of the IUT's handshake payloads; fail the case if it does not parse."""
    try:
        return HandshakePayload.decode_untrusted(payload)
    except ProtocolError as exc:
        raise CaseFailed(f"the IUT's {what} payload does not parse: {exc}") from None


class Hand:
    """A bare Noise handshake for the reference side, with payloads the case chooses."""

    def __init__(
        self,
        pattern: Pattern,
        *,
        initiator: bool,
        party: Party = REF,
        rs: bytes | None = None,
        ephemeral: bytes | None = None,
    ) -> None:
        self.party = party
        self.hs = HandshakeState(
            pattern=pattern,
            initiator=initiator,
            prologue=PROLOGUE,
            s=party.static,
            e=ephemeral if ephemeral is not None else party.ephemeral,
            rs=rs,
        )

    def write(self, payload: bytes) -> bytes:
        return self.hs.write_message(payload)

    def init(self, payload: bytes, index: int = REF_INDEX) -> bytes:
        """An INIT packet from the reference (initiator) carrying ``payload``."""
        return encode_init(self.hs.pattern, index, self.write(payload))

    def response(self, payload: bytes, receiver: int = IUT_INDEX, index: int = REF_INDEX) -> bytes:
        """A RESPONSE packet from the reference (responder) carrying ``payload``."""
        return encode_response(index, receiver, self.write(payload))

    @property
    def hash(self) -> bytes:
        """The handshake hash so far (after message 2: the h2 of the SAS)."""
        return self.hs.handshake_hash

    def read(self, message: bytes, what: str) -> bytes:
        """Read the IUT's handshake message; fail the case if it does not decrypt."""
        try:
            return self.hs.read_message(message)
        except ProtocolError as exc:
            raise CaseFailed(f"the IUT's {what} does not verify: {exc}") from None

    def check_identity(self, payload: bytes, party: Party = IUT) -> HandshakePayload:
        """Check the IUT's identity payload against the static key its message proved."""
        try:
            verify_peer_payload_untrusted(payload, self.hs.rs or b"", party.peer_id)
            return HandshakePayload.decode_untrusted(payload)
        except ProtocolError as exc:
            raise CaseFailed(f"the IUT's identity payload is not valid: {exc}") from None


def handshake_message(packet: bytes, ptype: PacketType) -> bytes:
    """The Noise message inside an IUT's handshake packet of type ``ptype``."""
    try:
        parsed = parse_handshake_untrusted(packet)
    except ProtocolError as exc:
        raise CaseFailed(f"the IUT sent an unparseable handshake packet: {exc}") from None
    expect_eq(parsed.type.name, ptype.name, "handshake packet type")
    return parsed.message


# -- records ------------------------------------------------------------------------------


def epoch_key(key: bytes, epoch: int) -> bytes:
    """The record key of ``epoch``: Noise REKEY applied ``epoch`` times."""
    for _ in range(epoch):
        key = crypto.rekey(key)
    return key


def seal_record(key: bytes, ptype: int, plaintext: bytes, *, receiver: int, epoch: int, counter: int) -> bytes:
    """A record with an explicit header; ``key`` is the epoch's key."""
    header = RECORD_HEADER.pack(ptype, receiver, epoch, counter)
    return header + crypto.RecordAead(key).encrypt(crypto.nonce_bytes(counter), plaintext, header)


@dataclasses.dataclass(slots=True)
class Opened:
    ptype: int
    receiver: int
    epoch: int
    counter: int
    plaintext: bytes


@dataclasses.dataclass(slots=True)
class Link:
    """The reference side of an established session: its two record keys and the indices."""

    send_key: bytes
    recv_key: bytes
    iut_index: int
    handshake_hash: bytes
    #: The SAS both sides should show, computed by ``reference_sas``.
    sas: str = ""
    #: The IUT's ``handshake_completed`` event.
    completed: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: Records the IUT sent with its last handshake answer, after the handshake packet (channel layer only).
    trailing: list[bytes] = dataclasses.field(default_factory=list)
    next_counter: int = 0
    epoch: int = 0

    def seal(self, ptype: int, plaintext: bytes, *, counter: int | None = None, epoch: int | None = None) -> bytes:
        """A record to the IUT; counters count up unless given."""
        if counter is None:
            counter = self.next_counter
            self.next_counter += 1
        epoch = self.epoch if epoch is None else epoch
        return seal_record(
            epoch_key(self.send_key, epoch), ptype, plaintext, receiver=self.iut_index, epoch=epoch, counter=counter
        )

    def data(self, plaintext: bytes, **kw: int) -> bytes:
        return self.seal(PacketType.DATA, plaintext, **kw)

    def open(self, record: bytes) -> Opened:
        """Open a record from the IUT (any epoch up to 8); fail the case if it does not authenticate."""
        expect(len(record) >= RECORD_HEADER.size + crypto.TAGLEN, f"record too short: {record.hex()}")
        ptype, receiver, epoch, counter = RECORD_HEADER.unpack_from(record)
        expect(epoch < 8, f"record epoch {epoch} is implausible this early")
        header = record[: RECORD_HEADER.size]
        aead = crypto.RecordAead(epoch_key(self.recv_key, epoch))
        plaintext = aead.decrypt(crypto.nonce_bytes(counter), record[RECORD_HEADER.size :], header)
        if plaintext is None:
            raise CaseFailed(f"the IUT's record (epoch {epoch}, counter {counter}) does not authenticate")
        expect_eq(receiver, REF_INDEX, "receiver index of the IUT's record")
        return Opened(ptype, receiver, epoch, counter, plaintext)


def establish(
    iut: Iut,
    role: str,
    *,
    pattern: Pattern = Pattern.XX,
    config: dict[str, Any] | None = None,
    ref_max_plaintext: int = MAX_PLAINTEXT,
    now: float = 0.0,
    channels: dict[str, Any] | None = None,
) -> Link:
    """Run a complete handshake with the IUT in ``role``; returns the reference side's ``Link``.

    The IUT's SAS nonce is checked against its commitment on the way; an IK
    responder IUT is confirmed with the CONFIRM record (counter 0).  With
    ``channels`` (the extra fields of ``conn_session``: ``services``,
    ``channel_config``) the IUT runs its channel layer (``conn_session`` and
    ``conn_receive``); the records it sends along with its last handshake answer
    are kept in ``Link.trailing``.
    """
    ik = pattern is Pattern.IK
    start, receive = ("session", "receive") if channels is None else ("conn_session", "conn_receive")
    if role == "initiator":
        init = one_packet_of(
            start_session(
                iut,
                role,
                remote_static=REF.static_public if ik else None,
                now=now,
                config=config,
                command=start,
                extra=channels,
            )
        )
        hand = Hand(pattern, initiator=False)
        raw = hand.read(handshake_message(init, PacketType.INIT), "INIT")
        commitment = (hand.check_identity(raw) if ik else decode_payload(raw, "INIT")).sas_commitment
        sender = int.from_bytes(init[2:6], "big")
        expect_eq(sender, IUT_INDEX, "INIT sender index")
        response = hand.response(identity_payload(REF, max_plaintext=ref_max_plaintext, index=REF_INDEX))
        h2 = hand.hash
        answer = iut.ok(receive, data=response, now=now)
        completed = one_event(answer, "handshake_completed")
        reply = out_of(answer)
        if channels is None:
            expect(len(reply) == 1, f"expected one datagram after RESPONSE, got {len(reply)}")
        expect(len(reply) >= 1, "expected a datagram after RESPONSE, got none")
        nonce: bytes | None = None
        if not ik:
            finish = hand.check_identity(hand.read(handshake_message(reply[0], PacketType.FINISH), "FINISH"))
            nonce = finish.sas_nonce
        k_i2r, k_r2i = hand.hs.split()
        link = Link(k_r2i, k_i2r, IUT_INDEX, hand.hash)
        if ik:
            opened = link.open(reply[0])
            expect_eq(opened.ptype, PacketType.CONFIRM, "IK initiator's key confirmation record type")
            nonce = opened.plaintext
        expect(
            nonce is not None and commitment == sas_commitment(nonce),
            "the IUT's SAS nonce does not open the commitment in its INIT",
        )
        link.sas, link.completed, link.trailing = reference_sas(h2, nonce or b""), completed, reply[1:]
        return link
    start_session(iut, role, now=now, config=config, command=start, extra=channels)
    hand = Hand(pattern, initiator=True, rs=IUT.static_public if ik else None)
    answer = iut.ok(receive, data=hand.init(init_payload(pattern, max_plaintext=ref_max_plaintext)), now=now)
    response = one_packet(answer, PacketType.RESPONSE)
    expect_eq(int.from_bytes(response[5:9], "big"), REF_INDEX, "RESPONSE receiver index")
    iut_index = int.from_bytes(response[1:5], "big")
    expect_eq(iut_index, IUT_INDEX, "RESPONSE sender index")
    payload = hand.check_identity(hand.read(handshake_message(response, PacketType.RESPONSE), "RESPONSE"))
    expect_eq(payload.session_index, iut_index, "session index in the RESPONSE payload")
    h2 = hand.hash
    if ik:
        k_i2r, k_r2i = hand.hs.split()
        link = Link(k_i2r, k_r2i, iut_index, hand.hash)
        answer = iut.ok(receive, data=link.seal(PacketType.CONFIRM, REF.sas_nonce), now=now)
    else:
        finish_packet = encode_finish(iut_index, hand.write(finish_payload(max_plaintext=ref_max_plaintext)))
        k_i2r, k_r2i = hand.hs.split()
        link = Link(k_i2r, k_r2i, iut_index, hand.hash)
        answer = iut.ok(receive, data=finish_packet, now=now)
    link.sas, link.completed = reference_sas(h2, REF.sas_nonce), one_event(answer, "handshake_completed")
    if channels is not None:
        link.trailing = out_of(answer)
    return link


def one_packet_of(out: list[bytes]) -> bytes:
    expect(len(out) == 1, f"expected one datagram, got {len(out)}")
    return out[0]
