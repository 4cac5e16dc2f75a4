"""Mutants of the core that a case (of conformance/cases_mut_frames.py or another) kills.

Rows: (case id, core-relative module, the text the mutant replaces, its replacement, mutant id);
tests/conformance/test_mutant_kills.py checks that the case fails against the mutant.
"""

KILLS: list[tuple[str, str, str, str, str]] = [
    (
        "frame/ch/20",
        "channels/frames.py",
        "if 0 <= channel_id < 0x40 and 0x4000 <= offset <= 0x3FFF_FFFF and 0x40 <= length <= 0x3FFF:",
        "if not 0 <= channel_id < 0x40 and 0x4000 <= offset <= 0x3FFF_FFFF and 0x40 <= length <= 0x3FFF:",
        "channels/frames.py:core/AddNot:2",
    ),
    (
        "frame/ch/21",
        "channels/frames.py",
        'service, pos = _read_text(buf, pos + 1, 1, MAX_SERVICE, "service")',
        'service, pos = _read_text(buf, pos + 1, 2, MAX_SERVICE, "service")',
        "channels/frames.py:core/NumberReplacer:122",
    ),
    (
        "frame/ch/21",
        "channels/frames.py",
        'service = _text(frame.service, 1, MAX_SERVICE, "service")',
        'service = _text(frame.service, 2, MAX_SERVICE, "service")',
        "channels/frames.py:core/NumberReplacer:94",
    ),
    (
        "frame/ch/21",
        "channels/frames.py",
        "if pos >= len(buf):",
        "if pos is len(buf):",
        "channels/frames.py:core/ReplaceComparisonOperator_GtE_Is:0",
    ),
    (
        "frame/ch/22",
        "channels/frames.py",
        "frames[-1] = Padding(length=last.length + 1 + after - pos)",
        "frames[-1] = Padding(length=last.length + 1 % after - pos)",
        "channels/frames.py:core/ReplaceBinaryOperator_Add_Mod:45",
    ),
    (
        "frame/ch/22",
        "channels/frames.py",
        "frames[-1] = Padding(length=last.length + 1 + after - pos)",
        "frames[-1] = Padding(length=last.length + 1 + after ^ pos)",
        "channels/frames.py:core/ReplaceBinaryOperator_Sub_BitXor:19",
    ),
    (
        "frame/ch/22",
        "channels/frames.py",
        "frames[-1] = Padding(length=last.length + 1 + after - pos)",
        "frames[-1] = Padding(length=last.length + 0 + after - pos)",
        "channels/frames.py:core/NumberReplacer:137",
    ),
    (
        "frame/ch/22",
        "channels/frames.py",
        "frames[-1] = Padding(length=last.length + 1 + after - pos)",
        "frames[1] = Padding(length=last.length + 1 + after - pos)",
        "channels/frames.py:core/ReplaceUnaryOperator_Delete_USub:1",
    ),
    (
        "frame/ch/22",
        "channels/frames.py",
        "frames[-1] = Padding(length=last.length + 1 + after - pos)",
        "frames[-1] = Padding(length=last.length + 1 / after - pos)",
        "channels/frames.py:core/ReplaceBinaryOperator_Add_Div:45",
    ),
    (
        "frame/ch/22",
        "channels/frames.py",
        "frames[-1] = Padding(length=last.length + 1 + after - pos)",
        "frames[-1] = Padding(length=last.length + 1 + after | pos)",
        "channels/frames.py:core/ReplaceBinaryOperator_Sub_BitOr:19",
    ),
    (
        "ch/flow/26",
        "channels/flow.py",
        "MAX_OFFSET: Final = (1 << 62) - 1",
        "MAX_OFFSET: Final = (1 << 62) - 2",
        "channels/flow.py:core/NumberReplacer:4",
    ),
    (
        "ch/flow/27",
        "channels/flow.py",
        "if elapsed * self.window < 2 * AUTOTUNE_RTTS * rtt * read:",
        "if elapsed * self.window < 2 + AUTOTUNE_RTTS * rtt * read:",
        "channels/flow.py:core/ReplaceBinaryOperator_Mul_Add:10",
    ),
    (
        "ch/flow/29",
        "channels/flow.py",
        "if n < 0 or self.consumed + n > self.highest_received:",
        "if n < 0 or self.consumed + n != self.highest_received:",
        "channels/flow.py:core/ReplaceComparisonOperator_Gt_NotEq:2",
    ),
    (
        "ch/flow/30",
        "channels/flow.py",
        "return self.sent >= self.limit and self.blocked_at != self.limit",
        "return self.sent >= self.limit or self.blocked_at != self.limit",
        "channels/flow.py:core/ReplaceAndWithOr:0",
    ),
    (
        "ch/flow/28",
        "channels/flow.py",
        "if rtt <= 0 or read * 2 < self.window or self.window >= self.maximum:",
        "if rtt <= 0 and read * 2 < self.window or self.window >= self.maximum:",
        "channels/flow.py:core/ReplaceOrWithAnd:2",
    ),
    (
        "ch/flow/28",
        "channels/flow.py",
        "if rtt <= 0 or read * 2 < self.window or self.window >= self.maximum:",
        "if rtt <= 0 or read * 2 == self.window or self.window >= self.maximum:",
        "channels/flow.py:core/ReplaceComparisonOperator_Lt_Eq:5",
    ),
    (
        "ch/flow/28",
        "channels/flow.py",
        "if rtt <= 0 or read * 2 < self.window or self.window >= self.maximum:",
        "if rtt <= 0 or read ** 2 < self.window or self.window >= self.maximum:",
        "channels/flow.py:core/ReplaceBinaryOperator_Mul_Pow:8",
    ),
    (
        "ch/flow/31",
        "channels/flow.py",
        "if size <= self.window:",
        "if size >= self.window:",
        "channels/flow.py:core/ReplaceComparisonOperator_LtE_GtE:6",
    ),
]
