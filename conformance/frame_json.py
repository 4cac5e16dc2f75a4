"""The JSON form of channel-layer frames (spec/conformance.md §3.6), for the runner and the adapter alike.

A frame object is ``{"type": name, **fields}``: ``FRAME_TYPES`` is the one
table of names, ``frame_to_json`` writes a frame and ``frame_from_json`` reads
one back, raising ``ValueError`` for anything that is not a frame object.  The
cases (``cases_frames.py``) turn that error into a failed case, the adapter
(``impl.py``) into a ``BAD_COMMAND`` answer.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Final

from p2pos.proto.channels import frames as ch

#: Frame object ``type`` -> frame class, in the order of spec/conformance.md §3.6.
FRAME_TYPES: Final[dict[str, type[ch.Frame]]] = {
    "padding": ch.Padding,
    "ping": ch.Ping,
    "ack": ch.Ack,
    "open": ch.Open,
    "accept": ch.Accept,
    "refuse": ch.Refuse,
    "stream": ch.Stream,
    "reset": ch.Reset,
    "stop_sending": ch.StopSending,
    "max_data": ch.MaxData,
    "max_channel_data": ch.MaxChannelData,
    "data_blocked": ch.DataBlocked,
    "channel_blocked": ch.ChannelBlocked,
    "message": ch.Message,
    "max_channels": ch.MaxChannels,
    "close_channel": ch.CloseChannel,
    "path_challenge": ch.PathChallenge,
    "path_response": ch.PathResponse,
    "keepalive_interval": ch.KeepaliveInterval,
}
FRAME_NAMES: Final[dict[type[ch.Frame], str]] = {cls: name for name, cls in FRAME_TYPES.items()}
#: The ``kind`` of an OPEN frame (and of ``conn_open``).
CHANNEL_KINDS: Final[dict[str, ch.ChannelKind]] = {"stream": ch.ChannelKind.STREAM, "message": ch.ChannelKind.MESSAGE}


def frame_to_json(frame: ch.Frame) -> dict[str, Any]:
    """``frame`` as a frame object: bytes in lowercase hex, kinds by name, ACK ranges as pairs."""
    out: dict[str, Any] = {"type": FRAME_NAMES[type(frame)]}
    for field in dataclasses.fields(frame):
        value = getattr(frame, field.name)
        if isinstance(value, bytes):
            value = value.hex()
        elif isinstance(value, ch.ChannelKind):
            value = value.name.lower()
        elif isinstance(value, tuple):
            value = [list(pair) for pair in value]
        out[field.name] = value
    return out


def frame_from_json(obj: Any) -> ch.Frame:
    """The frame a frame object describes; ``ValueError`` (saying why) if it describes none."""
    if not isinstance(obj, dict) or obj.get("type") not in FRAME_TYPES:
        raise ValueError(f"not a frame object: {obj!r}")
    cls = FRAME_TYPES[obj["type"]]
    fields = {k: v for k, v in obj.items() if k != "type"}
    unknown = set(fields) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"unexpected fields {sorted(unknown)} for {obj['type']}")
    for name, value in fields.items():
        if isinstance(value, float | bool) and name != "fin":
            raise ValueError(f"{name!r} must be an integer")
    try:
        if "data" in fields:
            fields["data"] = _unhex(fields["data"])
        if "kind" in fields:
            fields["kind"] = CHANNEL_KINDS[fields["kind"]]
        if "ack_ranges" in fields:
            fields["ack_ranges"] = tuple((int(gap), int(length)) for gap, length in fields["ack_ranges"])
        frame: ch.Frame = cls(**fields)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"bad frame object {obj!r}: {type(exc).__name__}: {exc}") from None
    return frame


def _unhex(value: Any) -> bytes:
    if not isinstance(value, str) or value != value.lower():
        raise ValueError(f"'data' must be a lowercase hex string, not {value!r}")
    return bytes.fromhex(value)
