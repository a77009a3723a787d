"""Three-way verdicts from 95% intervals: a claim holds, does not hold, or the data cannot tell.

A criterion is "the quantity lies on this side of that threshold". Its interval either clears the
threshold (holds), lies wholly on the wrong side (does not hold), or straddles it (inconclusive).
A claim made of several criteria (e.g. "less idle work AND no accuracy loss") holds when every
criterion clears, does not hold when any criterion is on the wrong side, and is inconclusive
otherwise. Means alone never decide a verdict: two seeds that happen to average below a threshold
with an interval reaching above it are reported as inconclusive.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

from llmqfl.evaluation.stats import Summary

HOLDS = "holds"
FAILS = "does not hold"
INCONCLUSIVE = "inconclusive"
NOT_MEASURABLE = "not measurable here"
VERDICT_CODES = {HOLDS: 1, FAILS: 0, INCONCLUSIVE: 2, NOT_MEASURABLE: -1}

CLEARS, WRONG_SIDE, STRADDLES = "clears", "wrong side", "straddles"


@dataclass(frozen=True)
class Criterion:
    """``summary`` must lie ``side`` of ``threshold`` (``strict``: the threshold itself is not enough)."""

    name: str
    summary: Summary
    threshold: float
    side: Literal["below", "above"]
    strict: bool = False

    def position(self) -> str:
        """Where the 95% interval lies relative to the threshold (an interval is required)."""
        if not self.summary.has_interval:
            raise ValueError(f"{self.name}: no interval (n={self.summary.n})")
        low, high, t = self.summary.low, self.summary.high, self.threshold
        if self.side == "below":
            if high < t or (not self.strict and high <= t):
                return CLEARS
            if low > t or (self.strict and low >= t):
                return WRONG_SIDE
            return STRADDLES
        if low > t or (not self.strict and low >= t):
            return CLEARS
        if high < t or (self.strict and high <= t):
            return WRONG_SIDE
        return STRADDLES

    def p_value(self) -> float:
        """Two-sided-equivalent p of "the mean lies ``side`` of the threshold": twice the one-sided t-test p,
        so p < 0.05 exactly when the 95% interval clears the threshold (NaN without an interval)."""
        values = np.asarray(self.summary.values, dtype=float)
        if not self.summary.has_interval or values.size < 2:
            return math.nan
        spread = float(np.std(values, ddof=1))
        if spread == 0:
            shift = self.summary.mean - self.threshold
            cleared = shift < 0 if self.side == "below" else shift > 0
            return 0.0 if cleared else 1.0
        t = (self.summary.mean - self.threshold) / (spread / math.sqrt(values.size))
        one_sided = stats.t.cdf(t, values.size - 1) if self.side == "below" else stats.t.sf(t, values.size - 1)
        return float(min(1.0, 2 * one_sided))

    def describe(self) -> str:
        sign = {("below", True): "<", ("below", False): "<=", ("above", True): ">", ("above", False): ">="}
        return (f"{self.name} = {self.summary.format()} ({sign[(self.side, self.strict)]} {self.threshold:.3g} "
                f"needed; interval {self.position()})")


def claim_p_value(criteria: Sequence[Criterion]) -> float:
    """A claim made of several criteria holds only when all do (intersection-union): its p is the largest."""
    values = [c.p_value() for c in criteria]
    return math.nan if not values or any(math.isnan(v) for v in values) else max(values)


def decide(criteria: Sequence[Criterion]) -> str:
    """HOLDS if every interval clears, FAILS if any lies on the wrong side, else INCONCLUSIVE."""
    if not criteria:
        raise ValueError("a verdict needs at least one criterion")
    positions = [c.position() for c in criteria]
    if WRONG_SIDE in positions:
        return FAILS
    return HOLDS if all(p == CLEARS for p in positions) else INCONCLUSIVE
