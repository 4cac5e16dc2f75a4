"""Property tests (STYLE.md §6, §9): untrusted input never raises, never breaks a session.

Every ``receive_*`` method must swallow any bytes (dropping and counting them),
every ``*_untrusted`` parser must raise only ``RemoteProtocolError``, and a
lossy, reordering, duplicating link must not stop handshakes from completing.
"""

from __future__ import annotations

import functools

from helpers import EndpointNet, LossyNet, SessionPair, completed, make_keys, of_type
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pos.proto import (
    HandshakeCompleted,
    MessageReceived,
    RemoteProtocolError,
    SecureSession,
    StreamFramer,
    frame,
)
from p2pos.proto.session.record import RecordReceiver
from p2pos.proto.session.wire import (
    PacketType,
    packet_type_untrusted,
    parse_handshake_untrusted,
    receiver_index_untrusted,
)

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@functools.cache
def reference(ik: bool) -> tuple[list[bytes], list[bytes], str]:
    """The datagrams and SAS of an undisturbed handshake with the default seed."""
    pair = SessionPair(ik=ik)
    pair.handshake()
    return pair.sent_a, pair.sent_b, completed(pair.events_a).sas


def mutations(real: list[bytes]) -> st.SearchStrategy[bytes]:
    """Bit flips, truncations and extensions of genuine datagrams.

    Bytes 1..4 of a RESPONSE (the responder's index) are left alone: that
    routing hint is not covered by Noise, so an on-path attacker who rewrites it
    can spoil the handshake, as one who drops packets can.
    """

    @st.composite
    def mutate(draw: st.DrawFn) -> bytes:
        data = bytearray(draw(st.sampled_from(real)))
        kind = draw(st.sampled_from(["flip", "truncate", "extend", "replay"]))
        if kind == "flip":
            positions = [i for i in range(len(data)) if not (data[0] == PacketType.RESPONSE and 1 <= i <= 4)]
            position = draw(st.sampled_from(positions))
            data[position] ^= draw(st.integers(min_value=1, max_value=255))
        elif kind == "truncate":
            del data[draw(st.integers(min_value=0, max_value=len(data) - 1)) :]
        elif kind == "extend":
            data += draw(st.binary(min_size=1, max_size=40))
        return bytes(data)

    return mutate()


def with_header(index: int) -> st.SearchStrategy[bytes]:
    """A plausible header (any type, the right index) followed by random bytes."""
    return st.builds(
        lambda t, body: bytes([t]) + index.to_bytes(4, "big") + body,
        st.integers(min_value=0, max_value=255),
        st.binary(max_size=120),
    )


def junk(ik: bool, index: int) -> st.SearchStrategy[list[bytes]]:
    sent_a, sent_b, _ = reference(ik)
    one = st.one_of(st.binary(max_size=200), with_header(index), mutations(sent_a + sent_b))
    return st.lists(one, max_size=8)


def fuzz_session(session: SecureSession, datagrams: list[bytes], now: float) -> None:
    for datagram in datagrams:
        session.receive_data(datagram, now)  # must not raise


@FAST
@given(ik=st.booleans(), data=st.data())
def test_session_survives_junk_during_handshake(ik: bool, data: st.DataObject) -> None:
    pair = SessionPair(ik=ik)
    (init,) = pair.take_a()
    fuzz_session(pair.a, data.draw(junk(ik, pair.a.local_index), label="to initiator before INIT is answered"), 0.0)
    pair.deliver_to_b(init)
    fuzz_session(pair.b, data.draw(junk(ik, pair.b.local_index), label="to responder"), 0.0)
    responses = pair.take_b()  # the RESPONSE, and again for each replayed INIT
    fuzz_session(pair.a, data.draw(junk(ik, pair.a.local_index), label="to initiator"), 0.0)
    for response in responses:
        pair.deliver_to_a(response)
    fuzz_session(pair.b, data.draw(junk(ik, pair.b.local_index), label="to responder awaiting confirmation"), 0.0)
    pair.flush()
    assert pair.a.is_established and pair.b.is_established
    assert completed(pair.events_a).sas == completed(pair.events_b).sas == reference(ik)[2]
    pair.check_messages_flow()


@FAST
@given(ik=st.booleans(), data=st.data())
def test_session_survives_junk_when_established(ik: bool, data: st.DataObject) -> None:
    pair = SessionPair(ik=ik)
    pair.handshake()
    pair.check_messages_flow(b"before")
    fuzz_session(pair.a, data.draw(junk(ik, pair.a.local_index)), pair.now)
    fuzz_session(pair.b, data.draw(junk(ik, pair.b.local_index)), pair.now)
    pair.flush()
    pair.check_messages_flow(b"after")
    assert pair.a.sas == pair.b.sas == reference(ik)[2]
    assert len(of_type(pair.events_a, HandshakeCompleted)) == len(of_type(pair.events_b, HandshakeCompleted)) == 1


@FAST
@given(data=st.data())
def test_endpoint_survives_junk(data: st.DataObject) -> None:
    net = EndpointNet()
    a, b = net.add("A", make_keys("alice")), net.add("B", make_keys("bob"))
    session = a.connect("B", net.now)
    net.flush()
    (responder,) = b.sessions()
    sent = [d for _, _, d in net.log]
    one = st.one_of(
        st.binary(max_size=200),
        with_header(session.local_index),
        with_header(responder.local_index),
        mutations(sent),
    )
    for datagram in data.draw(st.lists(one, max_size=10)):
        a.receive_data(datagram, "evil", net.now)
        b.receive_data(datagram, "evil", net.now)
    net.flush()  # answers to "evil" go nowhere
    assert a.address_of(session.local_index) == "B" and b.address_of(responder.local_index) == "A"
    session.send(b"still here", net.now)
    responder.send(b"me too", net.now)
    net.flush()
    assert of_type(net.events["B"], MessageReceived)[-1].data == b"still here"
    assert of_type(net.events["A"], MessageReceived)[-1].data == b"me too"
    assert session.sas == responder.sas


def reference_frames(stream: bytes, max_frame: int) -> tuple[list[bytes], bool, int]:
    """A straightforward framer: (frames, bad length seen, bytes left over)."""
    frames: list[bytes] = []
    pos = 0
    while len(stream) - pos >= 2:
        size = int.from_bytes(stream[pos : pos + 2], "big")
        if not 1 <= size <= max_frame:
            return frames, True, 0
        if len(stream) - pos - 2 < size:
            break
        frames.append(stream[pos + 2 : pos + 2 + size])
        pos += 2 + size
    return frames, False, len(stream) - pos


@settings(max_examples=200, deadline=None)
@given(
    chunks=st.lists(
        st.one_of(st.binary(max_size=50), st.binary(min_size=1, max_size=300).map(frame)),
        max_size=12,
    ),
    max_frame=st.sampled_from([1, 10, 100, 65535]),
    eof=st.booleans(),
)
def test_framer_never_raises_and_matches_reference(chunks: list[bytes], max_frame: int, eof: bool) -> None:
    framer = StreamFramer(max_frame=max_frame)
    out: list[bytes] = []
    for chunk in chunks:
        framer.receive_data(chunk)
        while (datagram := framer.next_frame()) is not None:
            out.append(datagram)
    if eof:
        framer.receive_eof()
        while (datagram := framer.next_frame()) is not None:
            out.append(datagram)
    expected, bad_length, left = reference_frames(b"".join(chunks), max_frame)
    assert out == expected
    assert (framer.error is not None) == (bad_length or (eof and left > 0))
    assert framer.buffered == (0 if framer.error is not None else left)


@settings(max_examples=300, deadline=None)
@given(
    data=st.one_of(
        st.binary(max_size=100),
        st.builds(lambda t, rest: bytes([t]) + rest, st.sampled_from([1, 2, 3]), st.binary(max_size=100)),
    )
)
def test_wire_parsers_raise_only_remote_errors(data: bytes) -> None:
    try:
        packet = parse_handshake_untrusted(data)
    except RemoteProtocolError:
        pass
    else:
        assert packet.type in (PacketType.INIT, PacketType.RESPONSE, PacketType.FINISH)
        assert data.endswith(packet.message)
    try:
        kind = packet_type_untrusted(data)
    except RemoteProtocolError:
        assert not data or data[0] not in set(PacketType)
    else:
        assert kind == data[0]
    index = receiver_index_untrusted(data)
    assert index is None or 0 <= index < 2**32


@settings(max_examples=100, deadline=None)
@given(
    data=st.one_of(
        st.binary(max_size=200),
        st.builds(
            lambda pattern, rest: bytes([PacketType.INIT, pattern]) + rest,
            st.sampled_from([1, 2, 3]),
            st.binary(min_size=0, max_size=250),
        ),
    )
)
def test_respond_untrusted_raises_only_remote_errors(data: bytes) -> None:
    try:
        session = SecureSession.respond_untrusted(make_keys("bob"), data, local_index=7, now=0.0)
    except RemoteProtocolError:
        return
    # Only an XX INIT (whose first message is unauthenticated) can be accepted from random bytes.
    assert data[:2] == bytes([PacketType.INIT, 0x01])  # INIT, pattern XX
    assert len(session.data_to_send(0.0)) == 1


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=100))
def test_record_open_never_raises(data: bytes) -> None:
    receiver = RecordReceiver(bytes(32))
    assert receiver.open_untrusted(data, 0.0) is None
    assert sum(receiver.drops.values()) == 1
    assert receiver.window.top == -1 and receiver.epoch == 0


@settings(max_examples=100, deadline=None, derandomize=True)
@given(
    seed=st.integers(min_value=0, max_value=2**32),
    ik=st.booleans(),
    loss=st.floats(min_value=0.0, max_value=0.2),
    duplicate=st.floats(min_value=0.0, max_value=0.3),
)
def test_handshakes_complete_over_a_lossy_link(seed: int, ik: bool, loss: float, duplicate: float) -> None:
    net = EndpointNet()
    a, b = net.add("A", make_keys("alice")), net.add("B", make_keys("bob"))
    lossy = LossyNet(net, seed=seed, loss=loss, duplicate=duplicate, max_delay=0.5)
    sessions = [a.connect("B", net.now, remote_static=make_keys("bob").static_public if ik else None) for _ in range(2)]

    def all_done() -> bool:
        return len(of_type(net.events["A"], HandshakeCompleted)) == 2 and (
            len(of_type(net.events["B"], HandshakeCompleted)) == 2
        )

    assert lossy.run(all_done, deadline=14.0), (net.events, lossy.dropped)
    sas_a = {e.session_id: e.sas for e in of_type(net.events["A"], HandshakeCompleted)}
    sas_b = {e.sas for e in of_type(net.events["B"], HandshakeCompleted)}
    assert set(sas_a.values()) == sas_b and len(sas_b) == 2
    assert len(b.sessions()) == 2  # duplicated INITs created nothing extra
    # Messages: each arrives at most once, despite duplication.
    for session in sessions:
        for i in range(20):
            session.send(b"%d:%d" % (session.local_index, i), net.now)
    lossy.run(lambda: False, deadline=net.now + 2.0)
    received = [e.data for e in of_type(net.events["B"], MessageReceived)]
    assert len(received) == len(set(received))
    assert set(received) <= {b"%d:%d" % (s.local_index, i) for s in sessions for i in range(20)}
    if loss == 0.0:
        assert len(received) == 40


def test_lossy_link_really_is_lossy() -> None:
    """The simulator drops, duplicates and reorders (else the test above proves nothing)."""
    net = EndpointNet()
    a = net.add("A", make_keys("alice"))
    net.add("B", make_keys("bob"))
    lossy = LossyNet(net, seed=3, loss=0.2, duplicate=0.3, max_delay=0.5)
    session = a.connect("B", net.now, remote_static=make_keys("bob").static_public)

    def done() -> bool:
        return bool(of_type(net.events["B"], HandshakeCompleted))

    assert lossy.run(done, deadline=14.0)
    for i in range(200):
        session.send(i.to_bytes(2, "big"), net.now)
    lossy.run(lambda: False, deadline=net.now + 2.0)
    got = [int.from_bytes(e.data, "big") for e in of_type(net.events["B"], MessageReceived)]
    assert 100 < len(got) < 200
    assert got != sorted(got)
    assert len(got) == len(set(got))
    assert lossy.dropped > 0
    assert lossy.delivered > len(got)  # some duplicates arrived and were refused
