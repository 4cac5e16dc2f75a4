"""Mutants of recovery/acks.py, congestion.py, pmtu.py, recovery.py and rtt.py that a case kills.

The cases are in conformance/cases_mut_loss.py (or elsewhere).  Rows: (case id, core-relative
module, the text the mutant replaces, its replacement, mutant id);
tests/conformance/test_mutant_kills.py checks that the case fails against the mutant.
"""

KILLS: list[tuple[str, str, str, str, str]] = [
    (
        "ch/rec/4",
        "recovery/acks.py",
        "            if pn == high + 1:  # only possible",
        "            if pn != high + 1:  # only possible",
        "recovery/acks.py:core/ReplaceComparisonOperator_Eq_NotEq:4",
    ),
    (
        "ch/rtt/1",
        "recovery/rtt.py",
        "if latest_rtt >= self.min_rtt + ack_delay:",
        "if latest_rtt > self.min_rtt + ack_delay:",
        "recovery/rtt.py:core/ReplaceComparisonOperator_GtE_Gt:0",
    ),
    (
        "ch/newreno/6",
        "recovery/congestion.py",
        "        if self._cwnd < self.ssthresh:\n            return 2 * peak",
        "        if self._cwnd is not self.ssthresh:\n            return 2 * peak",
        "recovery/congestion.py:core/ReplaceComparisonOperator_Lt_IsNot:1",
    ),
    (
        "ch/rec/4",
        "recovery/acks.py",
        "            if pn == low - 1:",
        "            if pn == low ^ 1:",
        "recovery/acks.py:core/ReplaceBinaryOperator_Sub_BitXor:0",
    ),
    (
        "ch/blackhole/2",
        "recovery/pmtu.py",
        "        self._suspicious += 1",
        "        self._suspicious += 2",
        "recovery/pmtu.py:core/NumberReplacer:36",
    ),
    (
        "ch/pmtu/7",
        "recovery/pmtu.py",
        "        if self._timer is None or now < self._timer:",
        "        if not self._timer is None or now < self._timer:",
        "recovery/pmtu.py:core/AddNot:15",
    ),
    (
        "ch/pmtu/7",
        "recovery/pmtu.py",
        "        if self._timer is None or now < self._timer:",
        "        if self._timer is None or now is not self._timer:",
        "recovery/pmtu.py:core/ReplaceComparisonOperator_Lt_IsNot:3",
    ),
    (
        "ch/blackhole/3",
        "recovery/pmtu.py",
        "            # Small packets were lost too: congestion or an outage, not a size problem.\n"
        "            self._suspicious = 0",
        "            # Small packets were lost too: congestion or an outage, not a size problem.\n"
        "            self._suspicious = 1",
        "recovery/pmtu.py:core/NumberReplacer:34",
    ),
    (
        "ch/loss/6",
        "recovery/recovery.py",
        "        if self.largest_acked is None or largest > self.largest_acked:",
        "        if self.largest_acked is None or largest != self.largest_acked:",
        "recovery/recovery.py:core/ReplaceComparisonOperator_Gt_NotEq:1",
    ),
    (
        "ch/newreno/7",
        "recovery/congestion.py",
        "        return peak + 2 * self._mds >= self._cwnd",
        "        return peak + 1 * self._mds >= self._cwnd",
        "recovery/congestion.py:core/NumberReplacer:31",
    ),
    (
        "ch/blackhole/4",
        "recovery/pmtu.py",
        "        self._suspicious = 0\n        self._set_state(PmtuState.BASE)",
        "        self._suspicious = -1\n        self._set_state(PmtuState.BASE)",
        "recovery/pmtu.py:core/NumberReplacer:39",
    ),
    (
        "ch/blackhole/2",
        "recovery/pmtu.py",
        "        if size > self._base:\n            self._suspicious = 0",
        "        if size > self._base:\n            self._suspicious = 1",
        "recovery/pmtu.py:core/NumberReplacer:32",
    ),
    (
        "ch/rec/4",
        "recovery/acks.py",
        "ranges[i + 1][1] == pn - 1",
        "ranges[i ^ 1][1] == pn - 1",
        "recovery/acks.py:core/ReplaceBinaryOperator_Add_BitXor:4",
    ),
    (
        "ch/rtt/2",
        "recovery/recovery.py",
        "        if last.pn == largest and ack_eliciting and rtt_sample:",
        "        if last.pn is largest and ack_eliciting and rtt_sample:",
        "recovery/recovery.py:core/ReplaceComparisonOperator_Eq_Is:3",
    ),
    (
        "ch/newreno/6",
        "recovery/congestion.py",
        "        if self._cwnd < self.ssthresh:\n            return 2 * peak",
        "        if not self._cwnd < self.ssthresh:\n            return 2 * peak",
        "recovery/congestion.py:core/AddNot:0",
    ),
    (
        "ch/pmtu/7",
        "recovery/pmtu.py",
        "or now is None else now + self._raise_interval",
        "or now is not None else now + self._raise_interval",
        "recovery/pmtu.py:core/ReplaceComparisonOperator_Is_IsNot:7",
    ),
    (
        "ch/rec/4",
        "recovery/acks.py",
        "ranges[i][0] = ranges[i + 1][0]",
        "ranges[i][0] = ranges[i + 0][0]",
        "recovery/acks.py:core/NumberReplacer:59",
    ),
    (
        "ch/rtt/3",
        "recovery/recovery.py",
        "        if last.pn == largest and ack_eliciting and rtt_sample:",
        "        if last.pn <= largest and ack_eliciting and rtt_sample:",
        "recovery/recovery.py:core/ReplaceComparisonOperator_Eq_LtE:3",
    ),
    (
        "ch/rec/4",
        "recovery/acks.py",
        "ranges[i][0] = ranges[i + 1][0]",
        "ranges[i][0] = ranges[i * 1][0]",
        "recovery/acks.py:core/ReplaceBinaryOperator_Add_Mul:5",
    ),
]
