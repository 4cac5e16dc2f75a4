"""Mutants of channels/sendbuf.py, channels/sending.py that a case of conformance/cases_mut_chsend.py
(or another) kills.

Rows: (case id, core-relative module, the text the mutant replaces, its replacement, mutant id);
tests/conformance/test_mutant_kills.py checks that the case fails against the mutant.
"""

SENDING = "channels/sending.py"
SENDBUF = "channels/sendbuf.py"

KILLS: list[tuple[str, str, str, str, str]] = [
    (
        "ch/send/1",
        SENDING,
        "if channel is not None and channel.messages is not None:",
        "if channel is not None or channel.messages is not None:",
        "channels/sending.py:core/ReplaceAndWithOr:29",
    ),
    (
        "ch/send/2",
        SENDING,
        "self._peer_open -= 1",
        "self._peer_open -= 2",
        "channels/sending.py:core/NumberReplacer:48",
    ),
    (
        "ch/send/3",
        SENDING,
        "if size > self.session.peer_max_plaintext + RECORD_OVERHEAD:",
        "if size > self.session.peer_max_plaintext | RECORD_OVERHEAD:",
        "channels/sending.py:core/ReplaceBinaryOperator_Add_BitOr:10",
    ),
    (
        "ch/send/4",
        SENDING,
        "popped = queue.pop(room - 2 - varint_size(channel.id) - 8 - varint_size(room))",
        "popped = queue.pop(room - 2 - varint_size(channel.id) ^ 8 - varint_size(room))",
        "channels/sending.py:core/ReplaceBinaryOperator_Sub_BitXor:18",
    ),
    (
        "ch/send/5",
        SENDING,
        "if channel.wants_to_send() and channel_id not in self._conn_blocked:",
        "if channel.wants_to_send() or channel_id not in self._conn_blocked:",
        "channels/sending.py:core/ReplaceAndWithOr:21",
    ),
    (
        "ch/send/6",
        SENDING,
        "channel = self.channels.get(b) if a == fr.FrameType.CLOSE_CHANNEL else None",
        "channel = self.channels.get(b) if not a == fr.FrameType.CLOSE_CHANNEL else None",
        "channels/sending.py:core/AddNot:90",
    ),
    (
        "ch/send/8",
        SENDBUF,
        "if len(self._queue) + len(self._retry) >= self.max_messages:\n"
        "            (self._retry or self._queue).popleft()",
        "if len(self._queue) + len(self._retry) is self.max_messages:\n"
        "            (self._retry or self._queue).popleft()",
        "channels/sendbuf.py:core/ReplaceComparisonOperator_GtE_Is:6",
    ),
    (
        "ch/send/9",
        SENDING,
        "unread = channel.recv.window.highest_received - channel.recv.bytes_read",
        "unread = channel.recv.window.highest_received >> channel.recv.bytes_read",
        "channels/sending.py:core/ReplaceBinaryOperator_Sub_RShift:1",
    ),
    # The mutant loops for ever: the case fails on its deadline (15 s here, 10 s in a run).
    (
        "ch/send/12",
        SENDING,
        "            turns -= 1",
        "            turns -= 0",
        "channels/sending.py:core/NumberReplacer:131",
    ),
    (
        "ch/send/13",
        SENDING,
        "return room - len(encoded) - len(data), True",
        "return room + len(encoded) - len(data), True",
        "channels/sending.py:core/ReplaceBinaryOperator_Sub_Add:14",
    ),
    (
        "ch/send/4",
        SENDING,
        "popped = queue.pop(room - 2 - varint_size(channel.id) - 8 - varint_size(room))",
        "popped = queue.pop(room * 2 - varint_size(channel.id) - 8 - varint_size(room))",
        "channels/sending.py:core/ReplaceBinaryOperator_Sub_Mul:16",
    ),
    (
        "ch/send/13",
        SENDING,
        "return room - len(encoded) - len(data), True",
        "return room - len(encoded) % len(data), True",
        "channels/sending.py:core/ReplaceBinaryOperator_Sub_Mod:15",
    ),
    (
        "ch/send/14",
        SENDBUF,
        "if start == self._base and not self._acked and not self._lost:",
        "if start == self._base and self._acked and not self._lost:",
        "channels/sendbuf.py:core/ReplaceUnaryOperator_Delete_Not:0",
    ),
    (
        "ch/send/15",
        SENDING,
        "            elif kind == _CONTROL:\n                frame = self._current_control(a, b)",
        "            elif kind >= _CONTROL:\n                frame = self._current_control(a, b)",
        "channels/sending.py:core/ReplaceComparisonOperator_Eq_GtE:22",
    ),
    (
        "ch/send/16",
        SENDING,
        "                            self._settle(channel_id, run, False, now)",
        "                            self._settle(channel_id, run, True, now)",
        "channels/sending.py:core/ReplaceFalseWithTrue:29",
    ),
    (
        "ch/send/17",
        SENDING,
        "if channel is None or channel.recv is None or channel.recv.final_size is not None:",
        "if channel is not None or channel.recv is None or channel.recv.final_size is not None:",
        "channels/sending.py:core/ReplaceComparisonOperator_Is_IsNot:15",
    ),
    (
        "ch/send/18",
        SENDING,
        "if burst and len(self._sendable) == 1 and not",
        "if burst and len(self._sendable) > 1 and not",
        "channels/sending.py:core/ReplaceComparisonOperator_Eq_Gt:1",
    ),
    (
        "ch/send/19",
        SENDBUF,
        "if len(self._queue) + len(self._retry) >= self.max_messages:\n"
        "            (self._retry or self._queue).popleft()",
        "if len(self._queue) - len(self._retry) >= self.max_messages:\n"
        "            (self._retry or self._queue).popleft()",
        "channels/sendbuf.py:core/ReplaceBinaryOperator_Add_Sub:15",
    ),
    (
        "ch/send/20",
        SENDING,
        "            if count == 0:\n                return False",
        "            if count == 1:\n                return False",
        "channels/sending.py:core/NumberReplacer:86",
    ),
    (
        "ch/send/22",
        SENDBUF,
        "        if at == 0 and count >= len(piece):",
        "        if at == 1 and count >= len(piece):",
        "channels/sendbuf.py:core/NumberReplacer:38",
    ),
    (
        "ch/send/23",
        SENDING,
        "            elif kind == _PING:\n                if a in self._pings:",
        "            elif kind >= _PING:\n                if a in self._pings:",
        "channels/sending.py:core/ReplaceComparisonOperator_Eq_GtE:21",
    ),
    (
        "ch/send/17",
        SENDING,
        "if channel is None or channel.recv is None or channel.recv.final_size is not None:",
        "if not channel is None or channel.recv is None or channel.recv.final_size is not None:",
        "channels/sending.py:core/AddNot:105",
    ),
    (
        "ch/send/24",
        SENDBUF,
        "if cursor + 1 < len(starts) and starts[cursor + 1] <= start:\n                cursor = self._locate(start)",
        "if cursor + 2 < len(starts) and starts[cursor + 1] <= start:\n                cursor = self._locate(start)",
        "channels/sendbuf.py:core/NumberReplacer:32",
    ),
    # The mutant loops for ever: the case fails on its deadline (15 s here, 10 s in a run).
    (
        "ch/send/24",
        SENDBUF,
        "return max(bisect_right(self._starts, offset, self._first) - 1, self._first)",
        "return max(bisect_right(self._starts, offset, self._first) & 1, self._first)",
        "channels/sendbuf.py:core/ReplaceBinaryOperator_Sub_BitAnd:5",
    ),
    (
        "ch/send/25",
        SENDING,
        "if channel.state is not ChannelState.OPENING:",  # the OPEN of a channel still opening (CH-3.3.12 split it)
        "if channel.state is ChannelState.OPENING:",
        "channels/sending.py:core/ReplaceComparisonOperator_IsNot_Is:20",
    ),
    (
        "ch/send/25",
        SENDING,
        "self._control[(fr.FrameType.PING, a + 1)] = fr.Ping()",
        "self._control[(fr.FrameType.PING, a | 1)] = fr.Ping()",
        "channels/sending.py:core/ReplaceBinaryOperator_Add_BitOr:14",
    ),
    (
        "ch/send/4",
        SENDING,
        "popped = queue.pop(room - 2 - varint_size(channel.id) - 8 - varint_size(room))",
        "popped = queue.pop(room - 2 - varint_size(channel.id) // 8 - varint_size(room))",
        "channels/sending.py:core/ReplaceBinaryOperator_Sub_FloorDiv:18",
    ),
    (
        "ch/send/26",
        SENDING,
        "if ftype == fr.FrameType.DATA_BLOCKED:",
        "if ftype > fr.FrameType.DATA_BLOCKED:",
        "channels/sending.py:core/ReplaceComparisonOperator_Eq_Gt:28",
    ),
    (
        "ch/send/27",
        SENDBUF,
        "return self._fin_pending and self.sent_offset == self.final_size",
        "return self._fin_pending or self.sent_offset == self.final_size",
        "channels/sendbuf.py:core/ReplaceAndWithOr:12",
    ),
    (
        "ch/send/28",
        SENDING,
        "        added = False\n        turns = len(sendable)",
        "        added = True\n        turns = len(sendable)",
        "channels/sending.py:core/ReplaceFalseWithTrue:19",
    ),
    (
        "ch/send/30",
        SENDBUF,
        "if start == self._base and not self._acked and not self._lost:",
        "if start == self._base and not self._acked and  self._lost:",
        "channels/sendbuf.py:core/ReplaceUnaryOperator_Delete_Not:1",
    ),
    (
        "ch/send/31",
        SENDING,
        "if not tokens or tokens[0][0] != _PROBE:",
        "if not tokens or tokens[0][ -1] != _PROBE:",
        "channels/sending.py:core/NumberReplacer:103",
    ),
    (
        "ch/send/32",
        SENDING,
        "if not tokens or tokens[0][0] != _PROBE:",
        "if not tokens or tokens[0][ -1] != _PROBE:",
        "channels/sending.py:core/NumberReplacer:103",
    ),
]
