"""The adapter's ``P2POS_IMPL_BUG`` hooks that break the core (conformance/cases_bugs.py).

Each value patches the pure-Python core inside the adapter process the way a second
implementation got a rule wrong; tests/conformance/test_bug_cases.py proves that the case
made for that rule then fails.  The compiled core's classes cannot be patched: a hook then
stops the adapter with a message instead of running unbroken.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

from p2pos.proto.channels import frames as ch
from p2pos.proto.errors import ErrorCode, ProtocolError
from p2pos.proto.identity import crypto

from .impl_nat_bugs import install_nat_bug


def install_bug(bug: str, adapter: dict[str, Any]) -> None:
    """Break the rule ``bug`` names inside this process (nothing for other values).

    ``adapter`` is the adapter module's namespace (a hook may replace one of its functions).
    """
    import hashlib

    import nacl.bindings

    from p2pos.proto.channels import pathing
    from p2pos.proto.channels.receiving import ReceivePath
    from p2pos.proto.channels.recvbuf import ReceiveBuffer
    from p2pos.proto.channels.sendbuf import SendBuffer
    from p2pos.proto.channels.sending import SendPath
    from p2pos.proto.errors import RemoteProtocolError
    from p2pos.proto.paths import path as path_module
    from p2pos.proto.recovery.recovery import AckResult, LossRecovery
    from p2pos.proto.session import session as session_module
    from p2pos.proto.session.replay import WINDOW, ReplayWindow

    neutral, order = b"\x01" + bytes(31), 2**252 + 27742317777372353535851937790883648493
    strict_verify = crypto.ed25519_verify

    def base(s: bytes) -> bytes:
        return nacl.bindings.crypto_scalarmult_ed25519_base_noclamp(s)

    def verify_key_only(public_key: bytes, message: bytes, sig: bytes) -> bool:  # small-order R slips through
        if (
            len(sig) == 64
            and sig[:32] == neutral
            and public_key != neutral
            and int.from_bytes(sig[32:], "little") < order
        ):
            k = int.from_bytes(hashlib.sha512(sig[:32] + public_key + message).digest(), "little") % order
            return base(sig[32:]) == nacl.bindings.crypto_scalarmult_ed25519_noclamp(
                k.to_bytes(32, "little"), public_key
            )
        return strict_verify(public_key, message, sig)

    def verify_r_only(public_key: bytes, message: bytes, sig: bytes) -> bool:  # a small-order key slips through
        if public_key == neutral and len(sig) == 64 and sig[:32] != neutral:
            return int.from_bytes(sig[32:], "little") < order and base(sig[32:]) == sig[:32]
        return strict_verify(public_key, message, sig)

    check, on_response = ReplayWindow.check, session_module.SecureSession._on_response
    verify_payload = session_module.SecureSession._verify
    sender: list[int] = [0]

    def on_response_noted(self: Any, packet: Any, data: bytes, now: float) -> None:
        sender[0] = packet.sender_index
        on_response(self, packet, data, now)

    def verify_without_index(self: Any, hs: Any, payload: bytes, expected: Any) -> Any:
        verified = verify_payload(self, hs, payload, expected)
        if verified is not None and verified.payload.session_index is None:
            filled = dataclasses.replace(verified.payload, session_index=sender[0])
            verified = dataclasses.replace(verified, payload=filled)
        return verified

    def x25519_lenient(private: bytes, public: bytes) -> bytes:
        try:
            return strict_x25519(private, public)
        except ProtocolError:
            return bytes(32)

    strict_x25519, on_stream, on_message = crypto.x25519, ReceivePath._on_stream, ReceivePath._on_message
    on_ack, receive_data, reset = LossRecovery.on_ack_received, ReceiveBuffer.receive_untrusted, SendBuffer.reset

    def on_stream_any_kind(self: Any, channel: Any, offset: int, data: bytes, fin: bool) -> None:
        if channel.recv is not None:
            on_stream(self, channel, offset, data, fin)

    def on_message_always(self: Any, channel: Any, frame: ch.Message) -> None:
        if channel.seen_messages is not None:
            channel.seen_messages = type(channel.seen_messages)()  # forgets every message id
        on_message(self, channel, frame)

    def on_ack_clipped(self: Any, ranges: Any, ack_delay: float, now: float) -> Any:
        clipped = [(low, min(high, self.largest_sent)) for low, high in ranges if low <= self.largest_sent]
        return on_ack(self, clipped, ack_delay, now) if clipped else AckResult()

    with_open = SendPath._with_open

    def with_open_once(self: Any, channel: Any, parts: Any, tokens: Any, room: int) -> int:
        # Early data rides with the OPEN only while the OPEN waits in the queue: later packets go without it.
        if (int(ch.FrameType.OPEN), channel.id) in self._control:
            return with_open(self, channel, parts, tokens, room)
        return room

    def receive_any_size(self: Any, offset: int, data: bytes, fin: bool) -> int:
        try:
            increase: int = receive_data(self, offset, data, fin)
        except RemoteProtocolError as exc:
            if exc.code is not ErrorCode.FINAL_SIZE_ERROR:
                raise
            return 0
        return increase

    def reset_written(self: Any) -> int:
        written: int = self.write_offset
        reset(self)
        return written

    make_path, on_response_path = pathing.PathLayer._make_path, path_module.Path.on_response

    def make_path_shared(self: Any, kind: Any, rank: int, max_datagram_size: int | None = None) -> Any:
        path = make_path(self, kind, rank, max_datagram_size)
        if self.paths:  # one RTT estimate, controller and pacer for every path (PTH-1.1 broken)
            active = self.path
            path.rtt = path.recovery.rtt = active.rtt
            path.cc, path.pacer = active.cc, active.pacer
        return path

    def on_ack_any_path(self: Any, ranges: Any, ack_delay: float, now: float, *, rtt_sample: bool = True) -> Any:
        return on_ack(self, ranges, ack_delay, now)  # an RTT sample whatever path the ACK came on (PTH-2.3)

    def on_response_any_path(self: Any, data: bytes, now: float, *, arrived_here: bool) -> bool:
        # a sample from a PATH_RESPONSE that came back on another path (PTH-2.3, PTH-3.4)
        return bool(on_response_path(self, data, now, arrived_here=True))

    def best_path_no_fate(self: Any, exclude: Any = None) -> Any:
        best, best_key = None, (0, 0.0)
        for path in self.paths.values():  # ranks only: a path sharing the dead one's fate is not last (PTH-4.8)
            if path.state is path_module.PathState.VALIDATED and path is not exclude:
                key = (path.rank, path.rtt.smoothed_rtt)
                if best is None or key < best_key:
                    best, best_key = path, key
        return best

    def build_packets_congested(self: Any, now: float) -> None:
        next_pn = self.session.next_counter
        for each in self.paths.values():  # too-old losses reported to the controller (REC-4.5.2 broken)
            too_old = each.recovery.declare_too_old(next_pn)
            if too_old:
                self._on_lost(too_old, now, congestion=True, path=None if each is self.path else each)
        self._build(now)

    from p2pos.proto.recovery import bbr

    def bbr_rate_without_floor(self: Any) -> None:  # REC-5.6.3.4 broken: no datagram-per-RTT floor
        if not self._pacing_rate and self._srtt > 0:
            self._pacing_rate = bbr.STARTUP_PACING_GAIN * self._cwnd / self._srtt
        bw = self._bw.best
        if bw <= 0:
            return
        rate = self.pacing_gain * bw * (1 - bbr.PACING_MARGIN)
        if self._full_bw_reached or rate > self._pacing_rate:
            self._pacing_rate = rate

    patches = {
        "sig-key-only": (crypto, "ed25519_verify", verify_key_only),
        "sig-r-only": (crypto, "ed25519_verify", verify_r_only),
        "replay-edge": (ReplayWindow, "check", lambda self, c: self.top - c == WINDOW or check(self, c)),
        "lowest-version": (session_module, "choose_version", lambda o, s: min(set(o) & set(s), default=None)),
        "response-no-index": (session_module.SecureSession, "_verify", verify_without_index),
        "ik-weak-send": (crypto, "x25519", x25519_lenient),
        "stream-on-message": (ReceivePath, "_on_stream", on_stream_any_kind),
        "dup-message": (ReceivePath, "_on_message", on_message_always),
        "ack-unsent": (LossRecovery, "on_ack_received", on_ack_clipped),
        "no-final-size": (ReceiveBuffer, "receive_untrusted", receive_any_size),
        "reset-written": (SendBuffer, "reset", reset_written),
        "path-no-pad": (pathing, "CHALLENGE_DATAGRAM_SIZE", 0),
        "path-unlimited": (path_module.Path, "send_budget", lambda self: None),
        "path-slow-death": (path_module, "PATH_DEAD_TIMEOUT", 4.0),
        "path-shared-state": (pathing.PathLayer, "_make_path", make_path_shared),
        "path-rtt-any-path": (LossRecovery, "on_ack_received", on_ack_any_path),
        "path-no-fate": (pathing.PathLayer, "_best_path", best_path_no_fate),
        "too-old-never": (LossRecovery, "declare_too_old", lambda self, next_pn: []),
        "too-old-congestion": (SendPath, "_build_packets", build_packets_congested),
        "bbr-no-floor": (bbr.Bbr, "_set_pacing_rate", bbr_rate_without_floor),
        # REC-5.6.5.1 broken: no ACK-aggregation allowance (the window's bound is CWND_GAIN * BDP + headroom)
        "bbr-no-aggregation": (bbr.Bbr, "_update_ack_aggregation", lambda self, acked, now: None),
        # REC-5.6.3.1 broken: BBRv1's ProbeRTT, four datagrams whatever the BDP
        "bbr-probe-rtt-four": (bbr, "PROBE_RTT_CWND_GAIN", 0.0),
        # REC-5.6.3.1 broken: ProbeRTT whenever min_rtt expires, even at a sample taken without a queue
        "bbr-probe-rtt-after-quiet": (bbr.Bbr, "_without_queue", lambda self, packet, window: False),
        # REC-5.6.2.7 broken: only the expiring acknowledgement's own sample may stand in for ProbeRTT
        "bbr-quiet-only-at-expiry": (bbr, "QUIET_WINDOW", 0.0),
        "early-no-open": (SendPath, "_with_open", with_open_once),
    }
    try:
        if bug in patches:
            target, name, replacement = patches[bug]
            setattr(target, name, replacement)
        if bug == "response-no-index":
            session_module.SecureSession._on_response = on_response_noted  # type: ignore[method-assign]
        if bug == "path-rtt-response":
            path_module.Path.on_response = on_response_any_path  # type: ignore[method-assign]
    except (TypeError, AttributeError) as exc:  # a compiled (mypyc) class
        sys.exit(f"P2POS_IMPL_BUG={bug} needs the pure-Python core: {exc}")
    install_nat_bug(bug)  # the NAT traversal rules (impl_nat_bugs.py)
    if bug == "ignore-versions":  # the IUT only ever supports version 1, whatever the config says
        config = adapter["_config"]
        adapter["_config"] = lambda raw: config({k: v for k, v in raw.items() if k != "versions"})
