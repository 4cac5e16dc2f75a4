"""Mutants of handshake/handshake.py, handshake/noise.py, handshake/payload.py, session/record.py,
session/replay.py that a case of conformance/cases_mut_hsrec.py (or another) kills.

Rows: (case id, core-relative module, the text the mutant replaces, its replacement, mutant id);
tests/conformance/test_mutant_kills.py checks that the case fails against the mutant.
"""

KILLS: list[tuple[str, str, str, str, str]] = [
    (
        "rec/rekey/7",
        "session/record.py",
        "now > self._previous_until",
        "now >= self._previous_until",
        "session/record.py:core/ReplaceComparisonOperator_Gt_GtE:2",
    ),
    (
        "rec/replay/9",
        "session/replay.py",
        "return not (self.blocks[(counter >> 6) & RING_MASK]",
        "return not (self.blocks[(counter >> 6) % RING_MASK]",
        "session/replay.py:core/ReplaceBinaryOperator_BitAnd_Mod:0",
    ),
    (
        "hs/req/23",
        "handshake/payload.py",
        "if len(data) - pos < _FIELD.size:",
        "if len(data) - pos is _FIELD.size:",
        "handshake/payload.py:core/ReplaceComparisonOperator_Lt_Is:1",
    ),
    (
        "hs/req/24",
        "handshake/payload.py",
        "if len(data) - pos < _FIELD.size:",
        "if len(data) - pos is _FIELD.size:",
        "handshake/payload.py:core/ReplaceComparisonOperator_Lt_Is:1",
    ),
    (
        "hs/ver/9",
        "handshake/payload.py",
        "0 <= v <= 0xFFFF",
        "0 < v <= 0xFFFF",
        "handshake/payload.py:core/ReplaceComparisonOperator_LtE_Lt:2",
    ),
    (
        "rec/replay/10",
        "session/replay.py",
        "min(target - current, _BLOCKS) + 1",
        "min(target - current, _BLOCKS) << 1",
        "session/replay.py:core/ReplaceBinaryOperator_Add_LShift:0",
    ),
    (
        "rec/replay/10",
        "session/record.py",
        "if counter >> 6 == top >> 6:",
        "if counter >> 6 == top << 6:",
        "session/record.py:core/ReplaceBinaryOperator_RShift_LShift:1",
    ),
    (
        "hs/req/23",
        "handshake/payload.py",
        "if len(data) - pos < _FIELD.size:",
        "if len(data) - pos <= _FIELD.size:",
        "handshake/payload.py:core/ReplaceComparisonOperator_Lt_LtE:1",
    ),
    (
        "rec/replay/9",
        "session/replay.py",
        "return not (self.blocks[(counter >> 6) & RING_MASK]",
        "return not (self.blocks[(counter >> 6) >> RING_MASK]",
        "session/replay.py:core/ReplaceBinaryOperator_BitAnd_RShift:0",
    ),
    (
        "hs/ver/9",
        "handshake/payload.py",
        "0 <= v <= 0xFFFF",
        "0 <= v < 0xFFFF",
        "handshake/payload.py:core/ReplaceComparisonOperator_LtE_Lt:3",
    ),
    (
        "rec/rekey/8",
        "session/record.py",
        "or now >= self._rekey_time:",
        "or now > self._rekey_time:",
        "session/record.py:core/ReplaceComparisonOperator_GtE_Gt:1",
    ),
    (
        "hs/amp/8",
        "handshake/handshake.py",
        "padding=max(short - 4, 1)",
        "padding=max(short - 4, 0)",
        "handshake/handshake.py:core/NumberReplacer:13",
    ),
    (
        "hs/req/25",
        "handshake/handshake.py",
        "if raw is None or len(raw) != 4:",
        "if raw is None or len(raw) < 4:",
        "handshake/handshake.py:core/ReplaceComparisonOperator_NotEq_Lt:1",
    ),
    (
        "rec/replay/11",
        "session/replay.py",
        "for step in range(1, min(target - current, _BLOCKS) + 1):",
        "for step in range(2, min(target - current, _BLOCKS) + 1):",
        "session/replay.py:core/NumberReplacer:22",
    ),
]
