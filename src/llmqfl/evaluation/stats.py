"""Small statistics the claims need: seed means with t-intervals, paired t-tests with Holm's correction,
the minimal detectable effect of a replicate count, bootstrap intervals for counts, and the convergence-rate fit."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy import optimize, stats

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Summary:
    """Mean over seeds with a two-sided Student-t interval (``low``/``high`` are None for n=1)."""

    mean: float
    low: float | None
    high: float | None
    n: int
    values: tuple[float, ...]

    @property
    def has_interval(self) -> bool:
        return self.low is not None and self.high is not None

    def format(self, digits: int = 3, *, percent: bool = False) -> str:
        """``mean [low, high] (n=k)``; for one seed ``mean (n=1, no interval)``."""
        scale, suffix = (100.0, "%") if percent else (1.0, "")

        def show(x: float) -> str:
            x *= scale
            if abs(x) >= 1e7:
                return f"{x:.3e}{suffix}"
            return f"{x:,.0f}{suffix}" if abs(x) >= 1000 else f"{x:.{digits}g}{suffix}"

        if not self.has_interval:
            return f"{show(self.mean)} (n={self.n}, no interval)"
        return f"{show(self.mean)} [{show(self.low)}, {show(self.high)}] (n={self.n})"


def summarise(values: Sequence[float], *, confidence: float = CONFIDENCE) -> Summary | None:
    """Mean and t-interval of finite ``values``; None when there are none."""
    finite = _finite(values)
    if not finite:
        return None
    mean = float(np.mean(finite))
    if len(finite) < 2:
        return Summary(mean, None, None, len(finite), tuple(finite))
    half = _half_width(finite, confidence)
    return Summary(mean, mean - half, mean + half, len(finite), tuple(finite))


def _half_width(values: list[float], confidence: float) -> float:
    sd = float(np.std(values, ddof=1))
    quantile = float(stats.t.ppf(0.5 + confidence / 2, df=len(values) - 1))
    return quantile * sd / math.sqrt(len(values))


def _finite(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


class PairedTest(NamedTuple):
    """Two-sided one-sample t-test of paired differences against 0, with its t-interval."""

    mean: float
    low: float
    high: float
    p: float
    n: int


def paired_t_test(diffs: Sequence[float | None], *, confidence: float = CONFIDENCE) -> PairedTest:
    """Mean, t-interval and two-sided p of paired differences (non-finite ones dropped).

    The p-value and the interval come from the same t statistic, so p < 1 - ``confidence`` exactly when
    the interval excludes 0. Fewer than 2 differences: interval and p are NaN. All differences equal:
    the t statistic is infinite (p = 0) unless they are all 0 (p = 1), where scipy would give NaN.
    """
    finite = _finite(diffs)
    n = len(finite)
    if n == 0:
        return PairedTest(math.nan, math.nan, math.nan, math.nan, 0)
    summary = summarise(finite, confidence=confidence)
    assert summary is not None
    if n < 2 or summary.low is None or summary.high is None:
        return PairedTest(summary.mean, math.nan, math.nan, math.nan, n)
    sd = float(np.std(finite, ddof=1))
    if sd == 0.0:
        p = 1.0 if summary.mean == 0.0 else 0.0
    else:
        t = summary.mean / (sd / math.sqrt(n))
        p = float(2.0 * stats.t.sf(abs(t), df=n - 1))
    return PairedTest(summary.mean, summary.low, summary.high, p, n)


def holm(p_values: Sequence[float | None]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order.

    Controls the family-wise error rate over all the comparisons of a table, so a row that "clears 0"
    is read against how many rows were tested. Step-down: the i-th smallest of m p-values is multiplied
    by m - i + 1, then made monotone (running maximum) and capped at 1. NaN (or None) stays NaN and is
    not counted in m: a comparison that could not be tested is no test.
    """
    values = np.asarray([math.nan if v is None else float(v) for v in p_values], dtype=float)
    finite = np.flatnonzero(~np.isnan(values))
    if np.any((values[finite] < 0) | (values[finite] > 1)):
        raise ValueError(f"p_values must lie in [0, 1], got {values[finite].tolist()}")
    adjusted = np.full(values.shape, math.nan)
    m = len(finite)
    if m:
        order = finite[np.argsort(values[finite], kind="stable")]
        scaled = values[order] * (m - np.arange(m))
        adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return [float(v) for v in adjusted]


def minimal_detectable_effect(
    sd: float, n: int, alpha: float = 0.05, power: float = 0.8, paired: bool = True
) -> float:
    """Smallest true mean difference a two-sided t-test at level ``alpha`` detects with ``power``.

    Says what a "no significant difference" with n replicates can rule out. ``paired``: a one-sample
    t-test of n paired differences whose sd is ``sd`` (df = n - 1, noncentrality d sqrt(n) / sd);
    otherwise a two-sample test with n per arm and common sd (df = 2n - 2, noncentrality
    d / (sd sqrt(2 / n))). Exact: the power of the t-test under the noncentral t distribution (both
    rejection tails), solved for d with brentq. Its large-n limit is the normal approximation
    (z_{1-alpha/2} + z_power) * sd / sqrt(n) (times sqrt(2) unpaired), which understates the effect
    for few replicates.
    """
    if not (isinstance(n, int | np.integer) and n >= 2):
        raise ValueError(f"n must be an integer >= 2 (a t-test needs 2 pairs), got {n!r}")
    if not (math.isfinite(sd) and sd > 0):
        raise ValueError(f"sd must be a finite number > 0, got {sd!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")
    if not alpha < power < 1:
        raise ValueError(f"power must lie in (alpha, 1) = ({alpha}, 1), got {power!r}")
    df = n - 1 if paired else 2 * n - 2
    se = sd / math.sqrt(n) if paired else sd * math.sqrt(2.0 / n)
    critical = float(stats.t.ppf(1 - alpha / 2, df))

    def shortfall(effect: float) -> float:
        nc = effect / se
        # the lower tail P(T < -c) = P(T' > c) with T' ~ nct(df, -nc); scipy's cdf gives NaN far in that tail,
        # where the probability is below 1e-9 and is taken as 0
        lower = float(stats.nct.sf(critical, df, -nc))
        return float(stats.nct.sf(critical, df, nc)) + (0.0 if math.isnan(lower) else lower) - power

    high = _normal_mde(se, alpha, power)
    while shortfall(high) < 0:
        high *= 2.0
    return float(optimize.brentq(shortfall, 0.0, high, xtol=1e-12 * high, rtol=1e-12))


def normal_mde(sd: float, n: int, alpha: float = 0.05, power: float = 0.8, paired: bool = True) -> float:
    """The large-n limit of :func:`minimal_detectable_effect`: (z_{1-alpha/2} + z_power) * standard error."""
    se = sd / math.sqrt(n) if paired else sd * math.sqrt(2.0 / n)
    return _normal_mde(se, alpha, power)


def _normal_mde(se: float, alpha: float, power: float) -> float:
    return float((stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)) * se)


def bootstrap_ci(
    values: Sequence[float],
    statistic: Callable[..., float] = np.mean,
    confidence: float = CONFIDENCE,
    n_resamples: int = 10000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` over finite ``values``, deterministic from ``seed``.

    For counts (rounds run, circuit executions): a t-interval is symmetric and can leave the support
    (rounds [7, 7, 2] give a negative lower bound); the percentile interval of a location statistic
    (mean, median, quantile) stays within [min, max]. A constant sample returns (v, v) without scipy,
    which warns or fails on degenerate samples.
    """
    finite = np.asarray(_finite(values), dtype=float)
    if finite.size == 0:
        raise ValueError("values must hold at least one finite number")
    if np.all(finite == finite[0]):
        return float(finite[0]), float(finite[0])
    result = stats.bootstrap(
        (finite,), statistic, n_resamples=n_resamples, confidence_level=confidence, method="percentile",
        rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


@dataclass(frozen=True)
class SlopeFit:
    """Fit of log(min_{t<=T} F_t - F*) = intercept + slope * log T."""

    slope: float
    intercept: float
    r2: float
    f_star: float
    n_points: int


def convergence_slope(
    losses: Sequence[float], *, f_star: float | None = None, lower_bound: float | None = 0.0
) -> SlopeFit | None:
    """Empirical convergence order of a loss curve (O(1/T) gives slope -1).

    ``losses[t-1]`` is F(theta_t) for rounds t = 1..T. The running minimum min_{t<=T} F_t is
    used, as in the paper's style of bound. ``f_star`` is the optimum F*; when unknown it is
    estimated as the value in [``lower_bound``, min F) that makes the log-log relation most linear
    (highest R^2), i.e. the best fit of F_T = F* + C T^slope. The bound matters: as F* goes to
    minus infinity the fitted slope goes to 0 whatever the curve, so an unbounded search can pick a
    meaningless flat fit; a cross-entropy is never negative, hence the default bound 0. Returns None
    when the curve has fewer than 3 finite points or is flat (no decrease to fit).
    """
    curve = np.asarray([np.nan if v is None else float(v) for v in losses], dtype=float)
    rounds = np.arange(1, len(curve) + 1, dtype=float)
    keep = np.isfinite(curve)
    curve, rounds = curve[keep], rounds[keep]
    if len(curve) < 3:
        return None
    running = np.minimum.accumulate(curve)
    span = float(running[0] - running[-1])
    if span <= 0:
        return None
    if f_star is not None:
        if f_star >= running[-1]:
            raise ValueError(f"f_star {f_star} must be below the smallest loss {running[-1]}")
        return _fit(running, rounds, f_star)
    return _best_offset_fit(running, rounds, span, lower_bound)


def _fit(running: np.ndarray, rounds: np.ndarray, f_star: float) -> SlopeFit:
    x, y = np.log(rounds), np.log(running - f_star)
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (intercept + slope * x)
    total = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum(residual**2)) / total if total > 0 else 0.0
    return SlopeFit(float(slope), float(intercept), r2, float(f_star), len(running))


def _best_offset_fit(running: np.ndarray, rounds: np.ndarray, span: float, lower_bound: float | None) -> SlopeFit:
    """Grid over offsets F* = min F - delta (log-spaced delta, F* >= lower_bound), then refine."""
    floor = float(running[-1])
    smallest = span * 1e-6
    largest = span * 1e3 if lower_bound is None or floor <= lower_bound else max(floor - lower_bound, 2 * smallest)
    deltas = np.geomspace(smallest, largest, 181)
    fits = [_fit(running, rounds, floor - d) for d in deltas]
    best = int(np.argmax([f.r2 for f in fits]))
    low, high = deltas[max(best - 1, 0)], deltas[min(best + 1, len(deltas) - 1)]
    fine = [_fit(running, rounds, floor - d) for d in np.geomspace(low, high, 41)]
    return max([fits[best], *fine], key=lambda f: f.r2)
