"""Mutants of the core that a case (of conformance/cases_mut_session.py or another) kills.

Rows: (case id, core-relative module, the text the mutant replaces, its replacement, mutant id);
tests/conformance/test_mutant_kills.py checks that the case fails against the mutant.
"""

_DEADLINE = "timer = self._deadline\n        if timer is not None and (best is None or timer "
_EXPIRY = "timer = self._expires_at\n        if timer is not None and (best is None or timer "

KILLS: list[tuple[str, str, str, str, str]] = [
    (
        "ses/close/3",
        "session/session.py",
        "if len(plaintext) < 2:",
        "if len(plaintext) < 3:",
        "session/session.py:core/NumberReplacer:80",
    ),
    # Outside the sample of seed 20261205's first 1500 (its twin on the expiry, Lt_Is:4, is in it).
    (
        "ses/timer/6",
        "session/session.py",
        _DEADLINE + "< best):",
        _DEADLINE + "is best):",
        "session/session.py:core/ReplaceComparisonOperator_Lt_Is:3",
    ),
    (
        "ses/api/4",
        "session/wire.py",
        "if len(data) < RESPONSE_HEADER.size:",
        "if len(data) is RESPONSE_HEADER.size:",
        "session/wire.py:core/ReplaceComparisonOperator_Lt_Is:1",
    ),
    (
        "ses/close/4",
        "session/session.py",
        "reason = plaintext[2 : 2 + MAX_CLOSE_REASON]",
        "reason = plaintext[2 : 2 * MAX_CLOSE_REASON]",
        "session/session.py:core/ReplaceBinaryOperator_Add_Mul:9",
    ),
    (
        "ses/api/5",
        "session/session.py",
        "len(remote_static) != crypto.DHLEN:",
        "len(remote_static) > crypto.DHLEN:",
        "session/session.py:core/ReplaceComparisonOperator_NotEq_Gt:0",
    ),
    (
        "ses/dup/1",
        "session/session.py",
        "and data == self._resend_trigger:",
        "and data <= self._resend_trigger:",
        "session/session.py:core/ReplaceComparisonOperator_Eq_LtE:1",
    ),
    (
        "ses/config/2",
        "session/session.py",
        "rekey_after_messages: int = 2**20",
        "rekey_after_messages: int = 2** 19",
        "session/session.py:core/NumberReplacer:15",
    ),
    (
        "ses/dup/2",
        "session/session.py",
        "elif packet.type is PacketType.FINISH and self.state",
        "elif packet.type <= PacketType.FINISH and self.state",
        "session/session.py:core/ReplaceComparisonOperator_Is_LtE:11",
    ),
    (
        "ep/demux/9",
        "session/wire.py",
        "data[6] << 16 | data[7] << 8 | data[8]) if len(data) >= 9",
        "data[6] << 16 % data[7] << 8 | data[8]) if len(data) >= 9",
        "session/wire.py:core/ReplaceBinaryOperator_BitOr_Mod:2",
    ),
    # Outside the sample of seed 20261205's first 1500: the bounds of a session index (SES-2.8).
    (
        "ses/api/6",
        "session/session.py",
        "if not 0 <= index < 2**32:",
        "if not 0 <= index < 2** 31:",
        "session/session.py:core/NumberReplacer:95",
    ),
    (
        "ses/api/7",
        "session/session.py",
        "if not 0 <= index < 2**32:",
        "if not 1 <= index < 2**32:",
        "session/session.py:core/NumberReplacer:90",
    ),
    (
        "ses/api/7",
        "session/session.py",
        "if not 0 <= index < 2**32:",
        "if not 0 < index < 2**32:",
        "session/session.py:core/ReplaceComparisonOperator_LtE_Lt:5",
    ),
    (
        "ses/timer/7",
        "session/session.py",
        _EXPIRY + "< best):",
        _EXPIRY + "is best):",
        "session/session.py:core/ReplaceComparisonOperator_Lt_Is:4",
    ),
]
