"""Small statistics the claims need: seed means with t-intervals, and the convergence-rate fit."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

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
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
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
