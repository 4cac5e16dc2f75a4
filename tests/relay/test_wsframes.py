"""p2pos_proto/relay/wsframes.py: RFC 6455 frames of a relay link (spec/relay.md §3.1, REL-3.1.3, REL-3.1.4),
checked against wsproto's own framing in both directions, fed whole and in random pieces."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from wsproto.frame_protocol import CloseReason, FrameProtocol, Opcode

from p2pos.proto.relay import messages as m
from p2pos.proto.relay import wsframes as wf

SIZES = [0, 1, 125, 126, 127, 65535, 65536, m.MAX_MESSAGE]


def _messages(rng: random.Random, count: int) -> list[bytes]:
    return [rng.randbytes(rng.choice(SIZES)) for _ in range(count)]


def _read_all(reader: wf.FrameReader, wire: bytes, rng: random.Random | None) -> list[tuple[int, bytes]]:
    """Feed ``wire`` whole (``rng`` None) or in random pieces, collecting every message."""
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(wire):
        step = len(wire) if rng is None else rng.choice([1, 2, 3, 9, 127, 4096, 65536, 262144])
        reader.feed(wire[pos : pos + step])
        pos += step
        while (message := reader.next_message()) is not None:
            out.append((message[0], bytes(message[1])))
    assert reader.buffered() == 0
    return out


def _read_into(reader: wf.FrameReader, wire: bytes, rng: random.Random) -> list[tuple[int, bytes | memoryview]]:
    """Like ``_read_all`` through ``space``/``filled`` (how the drivers read a socket), keeping each
    payload as returned but checking a view's bytes before the next read may overwrite them."""
    out: list[tuple[int, bytes | memoryview]] = []
    pos = 0
    while pos < len(wire):
        want = rng.choice([1, 3, 4096, 65536, 262144])
        room = reader.space(want)
        assert len(room) >= want
        step = min(want, len(wire) - pos)
        room[:step] = wire[pos : pos + step]
        reader.filled(step)
        pos += step
        while (message := reader.next_message()) is not None:
            out.append((message[0], bytes(message[1])))
            out.append(message)
    assert reader.buffered() == 0
    return out


@pytest.mark.parametrize("pieces", [False, True], ids=["whole", "pieces"])
def test_client_frames_from_wsproto_parse_here(pieces: bool) -> None:
    """REL-3.1.3: masked client frames as wsproto writes them, including fragments and pings between."""
    rng = random.Random(1)
    client = FrameProtocol(client=True, extensions=[])
    payloads = _messages(rng, 40)
    wire = bytearray()
    for payload in payloads:
        if len(payload) > 200 and rng.random() < 0.5:  # fragmented, with a ping between the fragments
            cut = rng.randrange(1, len(payload))
            wire += client.send_data(payload[:cut], False)
            wire += client.ping(b"hi")
            wire += client.send_data(payload[cut:], True)
        else:
            wire += client.send_data(payload, True)
    got = _read_all(wf.FrameReader(server=True, max_message=m.MAX_MESSAGE), bytes(wire), rng if pieces else None)
    assert [p for op, p in got if op == wf.BINARY] == payloads
    assert all(p == b"hi" for op, p in got if op == wf.PING)


@pytest.mark.parametrize("key", [None, b"\x01\x02\x03\x04"], ids=["server", "client"])
def test_frames_made_here_parse_in_wsproto(key: bytes | None) -> None:
    """What the relay (unmasked) and a client (masked) write is what wsproto expects of them."""
    rng = random.Random(2)
    peer = FrameProtocol(client=key is None, extensions=[])
    payloads = _messages(rng, 30)
    wire = b"".join(b"".join(wf.encode(wf.BINARY, p, key)) for p in payloads)
    wire += b"".join(wf.encode(wf.PING, b"x", key)) + b"".join(wf.encode(wf.CLOSE, wf.close_payload(4004, "q"), key))
    peer.receive_bytes(wire)
    frames = list(peer.received_frames())
    assert [f.payload for f in frames[:-2]] == payloads
    assert frames[-2].opcode is Opcode.PING and frames[-2].payload == b"x"
    assert frames[-1].opcode is Opcode.CLOSE and frames[-1].payload == (4004, "q")


@pytest.mark.parametrize("key", [None, b"\x01\x02\x03\x04"], ids=["server", "client"])
def test_a_frame_in_two_parts_is_the_frame_of_the_joined_payload(key: bytes | None) -> None:
    """encode_parts (a relay message's head, then its record): each part masked where it falls in
    the payload, for every head length modulo 4; wsproto reads the joined parts as one message."""
    rng = random.Random(3)
    peer = FrameProtocol(client=key is None, extensions=[])
    wire, payloads = b"", []
    for head_len in [0, 1, 2, 3, 4, 5, 6, 7, 33]:
        for tail_len in [0, 1, 126, 65535]:
            head, tail = rng.randbytes(head_len), rng.randbytes(tail_len)
            parts = wf.encode_parts(wf.BINARY, head, memoryview(tail), key)
            joined = b"".join(parts)
            assert joined == b"".join(wf.encode(wf.BINARY, head + tail, key))
            wire += joined
            payloads.append(head + tail)
    peer.receive_bytes(wire)
    assert [f.payload for f in peer.received_frames()] == payloads


@pytest.mark.parametrize("masker", [wf.mask_pure, wf.mask], ids=["pure", "in-use"])
def test_mask_is_its_own_inverse_and_rotates_with_the_key(masker: Callable[[bytes, bytes], bytes]) -> None:
    """Both maskers (``in-use`` is the C one when the websockets package is installed), on every buffer type."""
    data = bytes(range(256)) * 3 + b"abc"
    key = b"\xaa\x55\x0f\xf0"
    masked = masker(data, key)
    assert masked == bytes(b ^ key[i % 4] for i, b in enumerate(data))
    assert masker(bytes(masked), key) == data
    assert masker(memoryview(b"xx" + data)[2:], key) == masked  # type: ignore[arg-type]
    assert masker(bytearray(data), key) == masked  # type: ignore[arg-type]
    assert masker(b"", key) == b""


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        (bytes([0x82, 0x01, 0x08]), wf.PROTOCOL_ERROR),  # an unmasked frame from a client
        (bytes([0xC2, 0x80]) + b"kkkk", wf.PROTOCOL_ERROR),  # RSV1 without an extension
        (bytes([0x83, 0x80]) + b"kkkk", wf.PROTOCOL_ERROR),  # opcode 3 is reserved
        (bytes([0x80, 0x80]) + b"kkkk", wf.PROTOCOL_ERROR),  # a continuation with no message
        (bytes([0x09, 0x80]) + b"kkkk", wf.PROTOCOL_ERROR),  # a fragmented ping
        (bytes([0x89, 0xFE, 0x00, 0x7E]) + b"kkkk", wf.PROTOCOL_ERROR),  # a 126-byte ping
        (bytes([0x02, 0x80]) + b"kkkk" + bytes([0x82, 0x80]) + b"kkkk", wf.PROTOCOL_ERROR),  # new message mid-way
        (bytes([0x82, 0xFF]) + (1 << 40).to_bytes(8, "big"), wf.TOO_BIG),  # REL-3.1.4: known too long at once
    ],
)
def test_framing_errors_raise_with_a_close_code(wire: bytes, code: int) -> None:
    reader = wf.FrameReader(server=True, max_message=m.MAX_MESSAGE)
    reader.feed(wire)
    with pytest.raises(wf.FrameError) as caught:
        while reader.next_message() is not None:
            pass
    assert caught.value.code == code
    with pytest.raises(wf.FrameError):  # poisoned for good
        reader.next_message()


def test_a_fragmented_message_is_cut_off_at_the_limit_without_buffering_it() -> None:
    """REL-3.1.4: fragments adding up past the limit fail at the fragment that crosses it."""
    reader = wf.FrameReader(server=False, max_message=1000)
    reader.feed(b"".join(wf.encode(wf.BINARY, bytes(600))).replace(b"\x82", b"\x02", 1))  # not FIN
    assert reader.next_message() is None
    reader.feed(wf.header(wf.CONTINUATION, 500))  # the header alone: the length is enough
    with pytest.raises(wf.FrameError) as caught:
        reader.next_message()
    assert caught.value.code == wf.TOO_BIG


def test_a_server_frame_must_not_be_masked() -> None:
    reader = wf.FrameReader(server=False, max_message=100)
    reader.feed(b"".join(wf.encode(wf.BINARY, b"abc", b"kkkk")))
    with pytest.raises(wf.FrameError):
        reader.next_message()


def test_close_payloads() -> None:
    assert wf.parse_close(b"") == (None, "")
    assert wf.parse_close(wf.close_payload(4001, "a newer link")) == (4001, "a newer link")
    assert len(wf.close_payload(4000, "é" * 200)) <= 125  # cut on a character boundary
    wf.parse_close(wf.close_payload(4000, "é" * 200))
    for bad in (b"\x03", (999).to_bytes(2, "big"), (1005).to_bytes(2, "big"), (4000).to_bytes(2, "big") + b"\xff"):
        with pytest.raises(wf.FrameError):
            wf.parse_close(bad)
    with pytest.raises(ValueError):
        wf.encode(wf.PING, bytes(126))
    # wsproto's names for the codes: 1002 protocol error, 1009 too big
    assert (wf.PROTOCOL_ERROR, wf.TOO_BIG) == (CloseReason.PROTOCOL_ERROR, CloseReason.MESSAGE_TOO_BIG)


def test_any_bytes_give_messages_or_a_frame_error() -> None:
    """Fuzz (STYLE 9): random bytes, and valid frames with bytes flipped, never raise anything else."""
    rng = random.Random(3)
    valid = b"".join(
        b"".join(wf.encode(wf.BINARY, rng.randbytes(rng.choice([5, 200, 70000])), b"abcd")) for _ in range(5)
    )
    for trial in range(300):
        if trial % 2:
            wire = bytearray(valid)
            for _ in range(rng.randrange(1, 4)):
                wire[rng.randrange(len(wire))] = rng.randrange(256)
        else:
            wire = bytearray(rng.randbytes(rng.randrange(1, 300)))
        reader = wf.FrameReader(server=True, max_message=m.MAX_MESSAGE)
        try:
            _read_all_partial(reader, bytes(wire), rng)
        except wf.FrameError:
            pass


def _read_all_partial(reader: wf.FrameReader, wire: bytes, rng: random.Random) -> None:
    pos = 0
    while pos < len(wire):
        step = rng.choice([1, 17, 65536])
        reader.feed(wire[pos : pos + step])
        pos += step
        while reader.next_message() is not None:
            pass


@pytest.mark.parametrize("views", [False, True], ids=["copies", "views"])
def test_reading_into_the_readers_buffer_gives_the_same_messages(views: bool) -> None:
    """space/filled (recv_into) instead of feed, server frames (unmasked) from wsproto, fragments and
    pings between; with ``views`` a whole message is a view (no copy), a fragmented one bytes."""
    rng = random.Random(7)
    server = FrameProtocol(client=False, extensions=[])
    payloads = _messages(rng, 60)
    wire = bytearray()
    fragmented = []
    for payload in payloads:
        if len(payload) > 200 and rng.random() < 0.5:
            cut = rng.randrange(1, len(payload))
            wire += server.send_data(payload[:cut], False)
            wire += server.ping(b"hi")
            wire += server.send_data(payload[cut:], True)
            fragmented.append(payload)
        else:
            wire += server.send_data(payload, True)
    reader = wf.FrameReader(server=False, max_message=m.MAX_MESSAGE, views=views)
    got = _read_into(reader, bytes(wire), rng)
    copies, returned = got[0::2], got[1::2]
    assert [p for op, p in copies if op == wf.BINARY] == payloads
    assert all(p == b"hi" for op, p in copies if op == wf.PING)
    for (op, _), (_, given) in zip(copies, returned, strict=True):
        if op != wf.BINARY:
            assert type(given) is bytes  # control frames are always copied
        elif not views:
            assert type(given) is bytes
    kinds = {bytes(p): type(p) for op, p in returned if op == wf.BINARY and len(p) > 200}
    if views:
        assert any(kind is memoryview for kind in kinds.values())
        assert all(kinds[p] is bytes for p in fragmented if p in kinds)  # joined fragments: a copy


def test_a_message_longer_than_the_buffer_grows_it() -> None:
    """The buffer grows for a frame longer than it (another reader's limit than the relay's)."""
    payload = random.Random(3).randbytes(3 * wf.BUFFER_SIZE)
    wire = b"".join(wf.encode(wf.BINARY, payload))
    reader = wf.FrameReader(server=False, max_message=len(payload), views=True)
    got = _read_into(reader, wire, random.Random(4))
    assert got[0] == (wf.BINARY, payload)


def test_filled_past_the_space_is_refused() -> None:
    reader = wf.FrameReader(server=False, max_message=100)
    room = reader.space(10)
    with pytest.raises(ValueError):
        reader.filled(len(room) + 1)
