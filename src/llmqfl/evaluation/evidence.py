"""What the claims are decided from (Evidence), what each yields (ClaimResult), and the paired-statistics helpers.

Comparisons between arms are paired by replicate (one pair per replicate: rounds of one run are not
independent observations); a comparison needs at least :data:`MIN_SEEDS` replicates so that a 95%
interval exists. Counts shown beside a claim (rounds, circuit executions) carry a percentile-bootstrap
interval, which stays within their support; criteria use t-intervals of paired differences.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from llmqfl.contracts import ARMS
from llmqfl.evaluation.metrics import circuits_after_best_loss, dyadic_rate
from llmqfl.evaluation.stats import Summary, bootstrap_ci, summarise
from llmqfl.evaluation.verdicts import NOT_MEASURABLE, Criterion, claim_p_value, decide
from llmqfl.settings import Settings

MIN_SEEDS = 2
Record = Mapping[str, Any]


@dataclass(frozen=True)
class Evidence:
    """Everything the claims are decided from."""

    runs: Mapping[str, Sequence[Record]]  # arm -> evaluate-stage records (one per replicate)
    config: Settings  # the experiment's validated config (llmqfl.config.load_settings)
    distill: Sequence[Record] = ()  # per-client distill metrics.json (the configured PEFT)
    data_kind: str | None = None  # "dna" | "text" (data meta.json)
    majority_rate: float | None = None  # majority-class share of the server test set
    distill_full: Sequence[Record] = ()  # per-client distill metrics of full fine-tuning, same model and data
    scope: str = "quantum_init"  # replicates.scope that produced the intervals
    # arm -> runs of that arm aggregating every client at the same rounds (C4's reference); no stage makes them yet
    full_participation: Mapping[str, Sequence[Record]] = field(default_factory=dict)


@dataclass(frozen=True)
class ClaimResult:
    """One row of claims.md."""

    id: str
    claim: str
    metric: str
    values: Mapping[str, Summary | None]
    verdict: str
    reason: str
    percent: bool = False
    numbers: Mapping[str, float | None] = field(default_factory=dict)
    flags: tuple[str, ...] = ()
    p_value: float = math.nan  # of "the claim holds" (verdicts.claim_p_value); NaN where not tested


def _by_seed(evidence: Evidence, arm: str) -> dict[int, Record]:
    return {int(r["seed"]): r for r in evidence.runs.get(arm, ())}


def _per_arm(evidence: Evidence, metric: Callable[[Record], float | None]) -> dict[str, Summary | None]:
    return {arm: summarise([_finite(metric(r)) for r in evidence.runs.get(arm, ())]) for arm in ARMS}


def _count_summary(values: Sequence[float | None]) -> Summary | None:
    """Mean with a 95% percentile-bootstrap interval, for display: a t-interval of rounds [7, 7, 2] reaches
    below 2, the bootstrap one stays within [min, max]. One value: no interval."""
    finite = [v for v in (_finite(x) for x in values) if math.isfinite(v)]
    if not finite:
        return None
    if len(finite) < 2:
        return Summary(finite[0], None, None, 1, tuple(finite))
    low, high = bootstrap_ci(finite)
    return Summary(float(np.mean(finite)), low, high, len(finite), tuple(finite))


def _counts_per_arm(evidence: Evidence, metric: Callable[[Record], float | None]) -> dict[str, Summary | None]:
    return {arm: _count_summary([metric(r) for r in evidence.runs.get(arm, ())]) for arm in ARMS}


def _paired_runs(
    mine: Sequence[Record], theirs: Sequence[Record], metric: Callable[[Record, Record], float | None]
) -> Summary | None:
    """``metric(my run, their run)`` over the replicates (seeds) both sets of runs have: one pair per replicate."""
    by_seed = {int(r["seed"]): r for r in theirs}
    return summarise([_finite(metric(r, by_seed[int(r["seed"])])) for r in sorted(mine, key=lambda r: int(r["seed"]))
                      if int(r["seed"]) in by_seed])


def _paired(
    evidence: Evidence, arm: str, other: str, metric: Callable[[Record, Record], float | None]
) -> Summary | None:
    """``metric(run of arm, run of other)`` over the replicates both arms have."""
    return _paired_runs(evidence.runs.get(arm, ()), evidence.runs.get(other, ()), metric)


def _finite(value: Any) -> float:
    if value is None:
        return math.nan
    value = float(value)
    return value if math.isfinite(value) else math.nan


def _final_accuracy(record: Record) -> float | None:
    return record["final"].get("test_accuracy")


def after_best(record: Record) -> float:
    """Circuit executions of the run's rounds after its best server loss (spent once the loss stopped improving)."""
    per_round = record["per_round"]
    return circuits_after_best_loss(per_round.get("server_loss", ()), per_round.get("circuits", ()))


def idle_computation(record: Record) -> float:
    """Idle computation of a whole run, in circuit executions: straggler idle (what selected clients are short
    of the round's slowest client, summed over the run) plus :func:`after_best`."""
    return _finite(record["totals"].get("idle_circuits")) + after_best(record)


def mean_curve(records: Sequence[Record], rounds: int) -> list[float]:
    """Server loss per round averaged over replicates, over the first ``rounds`` rounds."""
    curves = [[_finite(x) for x in r["per_round"]["server_loss"][:rounds]] for r in records]
    return [float(v) for v in np.mean(curves, axis=0)]


def rate_summary(records: Sequence[Record]) -> Summary | None:
    """Convergence order of the mean server-loss curve (:func:`dyadic_rate`) with a jackknife t-interval.

    Replicates are averaged round by round over the rounds all of them ran. The interval comes from
    leaving one replicate out at a time (pseudo-values n theta - (n-1) theta_-i, whose t-interval is the
    jackknife interval), so it reflects replicate-to-replicate variation of a mean-curve estimate; no
    interval when a leave-one-out curve has no rate. None without a rate.
    """
    if not records:
        return None
    rounds = min(len(r["per_round"]["server_loss"]) for r in records)
    rate = dyadic_rate(mean_curve(records, rounds))
    if rate is None:
        return None
    n = len(records)
    left_out = [dyadic_rate(mean_curve([*records[:i], *records[i + 1:]], rounds)) for i in range(n)]
    if n < 2 or any(v is None for v in left_out):
        return Summary(rate, None, None, n, (rate,))
    return summarise([n * rate - (n - 1) * v for v in left_out if v is not None])


def _accuracy_gap(a: Record, b: Record) -> float:
    return _finite(_final_accuracy(a)) - _finite(_final_accuracy(b))


def _missing(evidence: Evidence, arms: Sequence[str]) -> str | None:
    absent = [a for a in arms if not evidence.runs.get(a)]
    if absent:
        return f"needs arm(s) {', '.join(absent)}, which this experiment did not run"
    return None


def _too_few(summaries: Sequence[Summary | None]) -> str | None:
    n = min((s.n if s else 0) for s in summaries)
    if n < MIN_SEEDS or not all(s is not None and s.has_interval for s in summaries):
        return f"n={n} replicate(s): a comparison needs >= {MIN_SEEDS} replicates for a 95% interval"
    return None


def _unmeasurable(base: dict[str, Any], reason: str) -> ClaimResult:
    return ClaimResult(**base, verdict=NOT_MEASURABLE, reason=reason)


def _decided(base: dict[str, Any], criteria: Sequence[Criterion], extra: str = "",
             numbers: Mapping[str, float | None] | None = None) -> ClaimResult:
    """The verdict and p of ``criteria``; ``numbers`` join those already in ``base``."""
    text = "; ".join(c.describe() for c in criteria) + (f"; {extra}" if extra else "")
    fields = {**base, "numbers": {**base.get("numbers", {}), **(numbers or {})}}
    return ClaimResult(**fields, verdict=decide(criteria), reason=text, p_value=claim_p_value(criteria))
