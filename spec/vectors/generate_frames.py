"""Write the channel-layer frame vectors (spec/vectors/frames.json) from the implementation.

Run from the repository root::

    /tmp/v/bin/python spec/vectors/generate_frames.py           # (re)write frames.json
    /tmp/v/bin/python spec/vectors/generate_frames.py --check   # exit 1 if it differs

Nothing here is random, so the output is the same on every run.  Frames are
written in the JSON form of spec/conformance.md §3.6 (``frame_to_json``).
``build_vectors()`` returns ``{file name: JSON text}`` as ``generate.py`` does;
tests/channels/test_frames.py compares it with the committed file and consumes the file
independently.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from p2pos.proto.channels.frames import (
    Accept,
    Ack,
    ChannelBlocked,
    ChannelKind,
    CloseChannel,
    DataBlocked,
    Frame,
    KeepaliveInterval,
    MaxChannelData,
    MaxChannels,
    MaxData,
    Message,
    Open,
    Padding,
    PathChallenge,
    PathResponse,
    Ping,
    Refuse,
    Reset,
    StopSending,
    Stream,
    encode_frame,
    encode_frames,
    parse_frames_untrusted,
)
from p2pos.proto.common import varint
from p2pos.proto.errors import ErrorCode, ProtocolError

VECTORS_DIR = Path(__file__).resolve().parent
Json = dict[str, Any]
MAX = varint.MAX_VARINT


def frame_to_json(frame: Frame) -> Json:
    """The JSON form of a frame (spec/conformance.md §3.6): ``type`` in snake case, then its fields."""
    out: Json = {"type": re.sub(r"(?<!^)(?=[A-Z])", "_", type(frame).__name__).lower()}
    for field in dataclasses.fields(frame):
        value = getattr(frame, field.name)
        if isinstance(value, bytes):
            value = value.hex()
        elif isinstance(value, ChannelKind):
            value = value.name.lower()
        elif isinstance(value, tuple):
            value = [list(pair) for pair in value]
        out[field.name] = value
    return out


# -- the vectors ----------------------------------------------------------------------

BOUNDARIES = [0, 1, 37, 63, 64, 16383, 16384, 2**30 - 1, 2**30, 2**62 - 1]
# RFC 9000 Appendix A.1, plus non-minimal forms of small values.
NON_MINIMAL = ["25", "4025", "7bbd", "9d7f3e7d", "c2197c5eff14e88c", "80000025", "c000000000000025", "4000"]

EVERY_TYPE: list[tuple[str, Frame]] = [
    ("PADDING: one zero byte", Padding(length=1)),
    ("PING", Ping()),
    ("ACK of one packet", Ack(largest=0, ack_delay=0, first_range=0)),
    ("ACK of three ranges", Ack.from_ranges([(10, 12), (5, 7), (0, 2)], ack_delay=25)),
    ("OPEN of a stream channel", Open(channel_id=0, kind=ChannelKind.STREAM, service="chat", initial_max_data=65536)),
    (
        "OPEN of a message channel, non-ASCII service",
        Open(channel_id=3, kind=ChannelKind.MESSAGE, service="vidéo/1", initial_max_data=1 << 20),
    ),
    (
        "OPEN with the longest service, 255 bytes",
        Open(channel_id=2, kind=ChannelKind.STREAM, service="s" * 255, initial_max_data=0),
    ),
    ("REFUSE with the longest reason, 1024 bytes", Refuse(channel_id=1, code=0, reason="é" * 512)),
    ("ACCEPT", Accept(channel_id=3, initial_max_data=262144)),
    ("REFUSE with a reason", Refuse(channel_id=4, code=int(ErrorCode.SERVICE_UNKNOWN), reason="no such service")),
    ("REFUSE without a reason", Refuse(channel_id=5, code=1000, reason="")),
    ("STREAM", Stream(channel_id=2, offset=0, data=b"hello")),
    ("STREAM at a 4-byte offset", Stream(channel_id=2, offset=70000, data=bytes(range(16)))),
    ("STREAM_FIN with data", Stream(channel_id=1, offset=5, data=b"bye", fin=True)),
    ("STREAM_FIN without data", Stream(channel_id=1, offset=8, data=b"", fin=True)),
    ("RESET", Reset(channel_id=6, code=3, final_size=1234)),
    ("STOP_SENDING", StopSending(channel_id=7, code=0)),
    ("MAX_DATA", MaxData(maximum=1 << 24)),
    ("MAX_CHANNEL_DATA", MaxChannelData(channel_id=2, maximum=131072)),
    ("DATA_BLOCKED", DataBlocked(limit=1 << 24)),
    ("CHANNEL_BLOCKED", ChannelBlocked(channel_id=2, limit=131072)),
    ("MESSAGE", Message(channel_id=9, message_id=0, data=b"\x00\x01\x02")),
    ("an empty MESSAGE", Message(channel_id=9, message_id=16384, data=b"")),
    ("MAX_CHANNELS", MaxChannels(maximum=100)),
    ("CLOSE_CHANNEL", CloseChannel(channel_id=2)),
    ("PATH_CHALLENGE", PathChallenge(data=bytes.fromhex("0123456789abcdef"))),
    ("PATH_RESPONSE", PathResponse(data=bytes.fromhex("0123456789abcdef"))),
    ("KEEPALIVE_INTERVAL of 120 s", KeepaliveInterval(sequence=1, interval_ms=120_000)),
    ("KEEPALIVE_INTERVAL asking for none", KeepaliveInterval(sequence=2, interval_ms=0)),
    ("KEEPALIVE_INTERVAL of one day, the longest", KeepaliveInterval(sequence=63, interval_ms=86_400_000)),
    ("the largest values", Reset(channel_id=MAX, code=MAX, final_size=MAX)),
    ("STREAM ending exactly at 2^62 - 1", Stream(channel_id=0, offset=MAX - 2, data=b"ab", fin=True)),
]

ACK_RANGES: list[tuple[list[tuple[int, int]], int]] = [
    ([(0, 0)], 0),
    ([(5, 9)], 1000),
    ([(10, 12), (5, 7), (0, 2)], 25),
    ([(100, 100), (98, 98), (96, 96), (94, 94)], 0),
    ([(2**40, 2**40 + 5), (1000, 2000), (0, 998)], 2**20),
    ([(MAX, MAX), (0, MAX - 2)], 63),
]

VALID_PACKETS: list[tuple[str, str]] = [
    ("an empty packet holds no frames", ""),
    ("consecutive PADDING frames read as one run", "0000000001000000"),
    ("STREAM then ACK then PADDING", "0602000568656c6c6f020c190202010201020000"),
    ("non-minimal varints everywhere, the type included", "4006c000000000000002800000004005" + "68656c6c6f"),
    ("a two-byte PADDING type (non-minimal) then PADDING", "400000"),
    ("an ACK whose last range reaches packet number 0 exactly", "02050001010002"),
]

INVALID_PACKETS: list[tuple[str, str]] = [
    ("unknown frame type 0x1f", "1f"),
    ("unknown frame type 0x3f after a PING", "013f"),
    ("unknown two-byte frame type 0x401f", "401f"),
    ("PATH_CHALLENGE with 7 bytes of data", "1101020304050607"),
    ("PATH_RESPONSE with no data", "12"),
    ("KEEPALIVE_INTERVAL without its interval", "1301"),
    ("KEEPALIVE_INTERVAL of one day and 1 ms", "1301" + "85265c01"),
    ("a frame type varint cut short", "40"),
    ("PING then a lone 0xff (an 8-byte varint cut short)", "01ff"),
    ("MAX_DATA without its value", "0a"),
    ("MAX_DATA with a truncated 4-byte varint", "0a800001"),
    ("STREAM data runs past the packet", "060000056869"),
    ("STREAM offset + length above 2^62 - 1", "0600fffffffffffffffe03616263"),
    ("MESSAGE data runs past the packet", "0e0000020a"),
    ("ACK first range larger than largest", "0205000006"),
    ("ACK gap underflows", "020a0001020700"),
    ("ACK range length underflows", "020a0001020007"),
    ("ACK range count larger than the pairs present", "020a00050201000100"),
    ("OPEN kind 2", "030002046368617400"),
    ("OPEN ending before its kind", "0300"),
    ("OPEN with an empty service", "0300000000"),
    ("OPEN with a 256-byte service", "030000410" + "0" + "61" * 256 + "00"),
    ("OPEN service not UTF-8", "03000002c328" + "00"),
    ("OPEN service with a UTF-16 surrogate", "03000003eda080" + "00"),
    ("REFUSE with a 1025-byte reason", "050001" + "4401" + "61" * 1025),
    ("REFUSE reason not UTF-8", "05000101ff"),
    ("REFUSE reason runs past the packet", "0500010568"),
]


def _case(note: str, packet: bytes) -> Json:
    try:
        frames = parse_frames_untrusted(packet)
    except ProtocolError as exc:
        return {"note": note, "packet": packet.hex(), "error": exc.code.name}
    return {"note": note, "packet": packet.hex(), "frames": [frame_to_json(f) for f in frames]}


def frame_vectors() -> Json:
    """The content of frames.json."""
    varints = [{"value": v, "encoding": varint.encode(v).hex()} for v in BOUNDARIES]
    decoded = [{"encoding": e, "value": varint.decode_untrusted(bytes.fromhex(e), 0)[0]} for e in NON_MINIMAL]
    frames = [{"note": note, "frame": frame_to_json(f), "encoding": encode_frame(f).hex()} for note, f in EVERY_TYPE]
    acks = []
    for ranges, delay in ACK_RANGES:
        ack = Ack.from_ranges(ranges, ack_delay=delay)
        acks.append(
            {"ranges": [list(r) for r in ranges], "frame": frame_to_json(ack), "encoding": encode_frame(ack).hex()}
        )
    whole = encode_frames([f for _, f in EVERY_TYPE])
    packets = [_case(note, bytes.fromhex(text)) for note, text in VALID_PACKETS]
    packets.append(_case("every frame type in one packet", whole))
    invalid = [_case(note, bytes.fromhex(text)) for note, text in INVALID_PACKETS]
    for case in packets:
        if "error" in case:
            raise SystemExit(f"valid packet vector fails to parse: {case}")
    for case in invalid:
        if "error" not in case:
            raise SystemExit(f"invalid packet vector parses: {case}")
    return {
        "description": (
            "Channel-layer frames. 'varints': values and their shortest encoding; 'varints_decoding': any "
            "encoding (minimal or not) and the value it reads as. 'frames': one frame (JSON form of "
            "spec/conformance.md §3.6) and its exact encoding. 'acks': inclusive packet number ranges, "
            "highest first, the ACK frame they give and its encoding. 'packets': packet bytes and the frames "
            "they parse to (consecutive PADDING frames as one run). 'invalid': packets that fail to parse, with "
            "the error code."
        ),
        "spec": ["spec/frames.md §2", "spec/frames.md §3", "spec/frames.md §4", "spec/frames.md §5"],
        "varints": varints,
        "varints_decoding": decoded,
        "frames": frames,
        "acks": acks,
        "packets": packets,
        "invalid": invalid,
    }


# -- output -------------------------------------------------------------------------


def build_vectors() -> dict[str, str]:
    """The vector file's name and exact text."""
    return {"frames.json": json.dumps(frame_vectors(), indent=2, ensure_ascii=False) + "\n"}


def write_or_check(vectors: dict[str, str], argv: list[str] | None, *, script: str, doc: str | None) -> int:
    """The generators' command line: write ``vectors`` beside the script, or ``--check`` them."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    parser.add_argument("--check", action="store_true", help="compare with the files instead of writing them")
    parser.add_argument("--dir", type=Path, default=VECTORS_DIR, help="output folder (default: beside this script)")
    args = parser.parse_args(argv)
    stale = []
    for name, text in vectors.items():
        path = args.dir / name
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if stale:
        print(f"out of date: {', '.join(stale)} (run spec/vectors/{script})", file=sys.stderr)
        return 1
    return 0


def load_sibling(name: str) -> ModuleType:
    """Another generator of this folder, by path (the folder is not a package)."""
    path = Path(__file__).with_name(f"{name}.py")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"{path} not found")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    return write_or_check(build_vectors(), argv, script="generate_frames.py", doc=__doc__)


if __name__ == "__main__":
    sys.exit(main())
